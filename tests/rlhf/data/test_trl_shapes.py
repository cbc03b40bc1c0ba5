"""Every export shape loads into the TRL trainer that consumes it and trains one step."""

import datasets
import pytest

from formats.preference import parse_hh_pair
from rlhf.data.pipeline import PipelineConfig, build_dataset
from rlhf.data.records import LabelRecord
from rlhf.data.splits import SplitConfig
from tests.hh_dialogues import hh_rows
from tests.rlhf.trl_steps import dpo_step, grpo_step, kto_step, reward_step, sft_step

pytest.importorskip("trl")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    # given 40 HH pairs as pairwise labels, 10 of them also as corrections and 5 both-bad

    records = []
    rows = hh_rows(40)
    for i, row in enumerate(rows, start=1):
        pair = parse_hh_pair(row)
        prompt = pair.prompt[-1:]  # keep rows short for the tiny model
        outcome = "both_bad" if i % 8 == 0 else "A"
        records.append(
            LabelRecord(
                label_id=i, task_id=i, kind="pairwise", annotator_id=1,
                payload={"outcome": outcome, "strength": "clear" if outcome == "A" else None},
                prompt_id=i, prompt=prompt,
                responses={2 * i: pair.chosen, 2 * i + 1: pair.rejected},
            )
        )  # fmt: skip
    for i, row in enumerate(rows[:10], start=100):
        pair = parse_hh_pair(row)
        records.append(
            LabelRecord(
                label_id=i, task_id=i, kind="correction", annotator_id=2,
                payload={"response_id": 5000 + i, "corrected_text": pair.chosen + " (reviewed)",
                         "unchanged": False},
                prompt_id=i, prompt=pair.prompt[-1:], responses={5000 + i: pair.rejected},
            )
        )  # fmt: skip
    out = tmp_path_factory.mktemp("export")
    config = PipelineConfig(split=SplitConfig(seed=0, validation=0.1, test=0.1))
    build_dataset(records, config=config, export_dir=out)
    return out


def load(export_dir, shape):
    return datasets.load_from_disk(str(export_dir / shape / "hf"))["train"]


def test_preference_shape_trains_reward_and_dpo(export_dir, tmp_path):
    train = load(export_dir, "preference")
    assert set(train["source"]) == {"pairwise", "correction"}
    assert reward_step(train.select(range(4)), tmp_path / "rm") >= 0
    assert dpo_step(train.select(range(4)), tmp_path / "dpo") >= 0


def test_sft_shape_trains_sft(export_dir, tmp_path):
    train = load(export_dir, "sft")
    assert train[0]["messages"][-1]["role"] == "assistant"
    assert sft_step(train.select(range(2)), tmp_path / "sft") >= 0


def test_kto_shape_includes_both_bad_negatives_and_trains_kto(export_dir, tmp_path):
    train = load(export_dir, "kto")
    labels = train["label"]
    assert True in labels
    assert False in labels
    both_bad = [r for r in train if r["id"].startswith("T8:")]
    assert both_bad
    assert not any(r["label"] for r in both_bad)
    rows = [i for i, label in enumerate(labels) if label][:2] + [
        i for i, label in enumerate(labels) if not label
    ][:2]
    kto_step(train.select(rows), tmp_path / "kto")


def test_prompt_only_shape_trains_grpo(export_dir, tmp_path):
    train = load(export_dir, "prompt_only")
    assert train.column_names == ["id", "prompt"]
    grpo_step(train.select(range(2)), tmp_path / "grpo")
