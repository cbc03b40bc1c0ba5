"""A reward model's evaluation carries the data audit's length and position probes, the
position probe read from the shown sides a snapshot writes beside its export."""

import json

from rlhf.data.audit import SHOWN_SIDES_FILE
from rlhf.data.records import EXPORT_FORMAT
from rlhf.training import RewardConfig, run_training

from .conftest import FAST, preference_rows


def write_export(root, train, validation, sides):
    (root / "preference").mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"format": EXPORT_FORMAT}))
    for name, rows in (("train", train), ("validation", validation)):
        with open(root / "preference" / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in rows)
    (root / SHOWN_SIDES_FILE).parent.mkdir(parents=True)
    (root / SHOWN_SIDES_FILE).write_text(json.dumps(sides))


def test_reward_evaluation_reports_length_and_shown_side_probes(tiny_lm, tmp_path):
    # given an export whose validation pairs all have the longer answer chosen, three of them
    # shown left and one right (the fifth has no recorded side)
    validation = preference_rows(5, long_every=0)
    sides = {"pair-0": "left", "pair-1": "left", "pair-2": "left", "pair-3": "right"}
    write_export(tmp_path / "export", preference_rows(8), validation, sides)

    # when a reward model trains on it
    result = run_training(
        "reward", RewardConfig(base_model=str(tiny_lm), **FAST), tmp_path / "export",
        tmp_path / "run",
    )  # fmt: skip

    # then its validation metrics carry the probes, consistent with its accuracy
    metrics = result.metrics["validation"]
    probes = metrics["bias_probes"]
    assert probes["pairs"] == 5
    longer = probes["accuracy_chosen_longer"]
    assert longer["n"] == 5
    assert longer["count"] == round(metrics["accuracy"] * 5)
    assert probes["accuracy_chosen_shorter"]["n"] == 0
    by_side = probes["accuracy_by_shown_side"]
    assert (by_side["left"]["n"], by_side["right"]["n"]) == (3, 1)
    assert by_side["left"]["count"] + by_side["right"]["count"] <= longer["count"]
    assert isinstance(probes["reward_length_spearman"]["rho"], float)
    # and the calibration of its probabilities over the decided pairs (ties left out)
    calibration = probes["calibration"]
    assert calibration["pairs"] == 5 - metrics["ties"]
    assert sum(b["pairs"] for b in calibration["bins"]) == calibration["pairs"]
    right = sum(round(b["pairs"] * b["accuracy"]) for b in calibration["bins"] if b["pairs"])
    assert right == longer["count"]
    used = [b for b in calibration["bins"] if b["pairs"]]
    gap = sum(
        b["pairs"] / calibration["pairs"] * abs(b["confidence"] - b["accuracy"]) for b in used
    )
    assert abs(calibration["ece"] - gap) < 1e-3
