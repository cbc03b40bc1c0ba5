"""The command line: training from a config file, reward-model evaluation, config schema."""

import json

import pytest

from rlhf.training.__main__ import main
from rlhf.training.intervals import wilson_interval

from .conftest import FAST


def write_hh(path, count):
    rows = [
        {
            "chosen": f"\n\nHuman: how do I make tea {i}?\n\nAssistant: Boil water, add leaves.",
            "rejected": f"\n\nHuman: how do I make tea {i}?\n\nAssistant: No.",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_then_evaluate_reward_print_json_as_their_last_line(tiny_lm, tmp_path, capsys):
    data = write_hh(tmp_path / "hh.jsonl", 12)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "reward", "base_model": str(tiny_lm), **FAST}))

    assert (
        main(
            ["reward", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "run")]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["method"] == "reward"
    assert trained["global_step"] == 2

    assert (
        main(["evaluate-reward", "--model", str(tmp_path / "run" / "model"), "--data", str(data)])
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["pairs"] == 12
    assert {"accuracy", "ties", "loss"} <= set(evaluated)
    assert 0.0 <= evaluated["accuracy"] <= 1.0
    # the accuracy comes with its 95% Wilson interval over the 12 pairs
    low, high = wilson_interval(evaluated["accuracy"], 12)
    assert evaluated["accuracy_ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert low <= evaluated["accuracy"] <= high


def test_schema_prints_every_field(capsys):
    assert main(["schema", "dpo"]) == 0
    names = {entry["name"] for entry in json.loads(capsys.readouterr().out)}
    assert {"beta", "reference_model", "learning_rate", "use_lora"} <= names
