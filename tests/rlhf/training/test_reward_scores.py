"""A reward model trains on rubric scores (regression) as well as on pairs (tiny models, CPU)."""

import json

import pytest

from rlhf.training.config import RewardConfig
from rlhf.training.data import DataError, DatasetSplits, load_splits
from rlhf.training.reward import score_rows, tokenize_scores
from rlhf.training.runner import run_training

from .conftest import TOPICS, preference_rows

FAST = {"max_steps": 3, "per_device_batch_size": 4, "eval_every_steps": 0, "seed": 3}


def score_export_rows(count: int, *, dimensions=("helpful",)) -> list[dict]:
    """Rubric score rows as a snapshot exports them: a helpful answer scores 5, a refusal 1."""
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        good = i % 2 == 0
        text = f"Here is how to make {topic}: step one." if good else "No."
        for dimension in dimensions:
            rows.append(
                {
                    "id": f"T{i}:r{i}:{dimension}",
                    "prompt": [{"role": "user", "content": f"How do I make {topic}?"}],
                    "completion": [{"role": "assistant", "content": text}],
                    "dimension": dimension,
                    "score": 5.0 if good else 1.0,
                    "labels": 2,
                }
            )
    return rows


def test_score_rows_are_read_from_an_export_and_packed_two_per_example(tmp_path, tiny_encoder):
    # given an export folder with a score shape (and no preference shape)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tandem-export/1"}))
    (tmp_path / "score").mkdir()
    rows = score_export_rows(3)
    (tmp_path / "score" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    # when a reward model's data are loaded for scores
    splits = load_splits("reward", tmp_path, shape="score")

    # then every row is there, canonical
    assert [(r["completion"], r["score"]) for r in splits.train] == [
        ("Here is how to make bread: step one.", 5.0),
        ("No.", 1.0),
        ("Here is how to make a bike: step one.", 5.0),
    ]
    # and three answers pack into two examples, the odd one paired with itself, standardised
    from rlhf.training.loading import load_tokenizer

    columns, _ = tokenize_scores(splits.train, load_tokenizer(tiny_encoder), 64, mean=3.0, std=2.0)
    assert columns["score_chosen"] == [1.0, 1.0]
    assert columns["score_rejected"] == [-1.0, 1.0]
    assert columns["chosen_ids"][1] == columns["rejected_ids"][1]


def test_score_rows_need_one_dimension():
    rows = [
        {**r, "completion": r["completion"][0]["content"]}
        for r in score_export_rows(2, dimensions=("helpful", "harmless"))
    ]
    with pytest.raises(DataError, match="score_dimension"):
        score_rows(rows, "")
    assert {r["dimension"] for r in score_rows(rows, "harmless")} == {"harmless"}
    with pytest.raises(DataError, match="'honest'"):
        score_rows(rows, "honest")


def test_a_reward_model_regresses_on_scores_and_the_run_records_which(tiny_encoder, tmp_path):
    scores = DatasetSplits(
        train=score_export_rows(8, dimensions=("helpful", "harmless")),
        validation=score_export_rows(4, dimensions=("helpful", "harmless")),
    )
    config = RewardConfig(
        base_model=str(tiny_encoder), backbone="encoder", reward_target="scores",
        score_dimension="helpful", **FAST,
    )  # fmt: skip
    result = run_training("reward", config, scores, tmp_path / "scores")

    assert result.details["reward_target"] == "scores"
    # the 8 helpful scores are four 5s and four 1s: mean 3, sample spread 2.138
    assert result.details["score_target"] == {
        "dimension": "helpful",
        "mean": 3.0,
        "std": pytest.approx(2.1381, abs=1e-4),
    }
    assert result.details["head_init"]["mode"] == "random"
    validation = result.metrics["validation"]
    assert validation["rows"] == 4
    assert validation["mse"] >= 0.0
    assert validation["pearson"] is None or -1.0 <= validation["pearson"] <= 1.0

    pairs = RewardConfig(base_model=str(tiny_encoder), backbone="encoder", **FAST)
    paired = run_training(
        "reward", pairs, DatasetSplits(train=preference_rows(8)), tmp_path / "pairs"
    )
    assert paired.details["reward_target"] == "pairs"
    assert "score_target" not in paired.details
