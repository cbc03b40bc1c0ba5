"""Reading exports, single .jsonl files and in-memory rows into canonical rows."""

import json

import pytest

from rlhf.training.data import DataError, DatasetSplits, load_splits

from .conftest import preference_rows, sft_rows


def write_export(root, shapes: dict[str, dict[str, list[dict]]]):
    manifest = {"format": "tandem-export/1", "shapes": {}}
    for shape, splits in shapes.items():
        (root / shape).mkdir(parents=True)
        manifest["shapes"][shape] = {}
        for split, rows in splits.items():
            (root / shape / f"{split}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in rows)
            )
            manifest["shapes"][shape][split] = len(rows)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_an_export_folder_gives_each_method_its_shape(tmp_path):
    export = write_export(
        tmp_path,
        {
            "preference": {"train": preference_rows(3), "validation": preference_rows(2)},
            "sft": {"train": sft_rows(4), "test": sft_rows(1)},
        },
    )
    reward = load_splits("reward", export)
    sft = load_splits("sft", export)
    assert (len(reward.train), len(reward.validation), len(reward.test)) == (3, 2, 0)
    assert reward.train[1]["chosen"] == "Here is how to make tea: step one."
    assert reward.train[1]["margin"] == 1.0
    assert (len(sft.train), len(sft.test)) == (4, 1)
    assert sft.train[1]["source"] == "correction"


def test_online_methods_fall_back_on_preference_prompts(tmp_path):
    export = write_export(tmp_path, {"preference": {"train": preference_rows(2)}})
    splits = load_splits("grpo", export)
    assert splits.train[1]["prompt"] == [{"role": "user", "content": "How do I make tea?"}]


def test_an_hh_jsonl_file_is_split_by_a_stable_hash_and_bad_rows_are_counted(tmp_path):
    rows = [
        {
            "chosen": f"\n\nHuman: q{i}\n\nAssistant: good",
            "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad",
        }
        for i in range(40)
    ] + [{"chosen": "not a dialogue"}]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = load_splits("reward", path, holdout_fraction=0.25)
    second = load_splits("reward", path, holdout_fraction=0.25)
    assert len(first.train) + len(first.validation) == 40
    assert first.unreadable_rows == 1
    assert 0 < len(first.validation) < 20
    assert [r["id"] for r in first.validation] == [r["id"] for r in second.validation]


def test_a_folder_without_the_needed_shape_is_refused(tmp_path):
    export = write_export(tmp_path, {"sft": {"train": sft_rows(2)}})
    with pytest.raises(DataError, match=r"preference/train\.jsonl"):
        load_splits("dpo", export)


def test_in_memory_splits_are_canonicalised():
    splits = load_splits("dpo", DatasetSplits(train=preference_rows(2), test=[{"x": 1}]))
    assert len(splits.train) == 2
    assert splits.unreadable_rows == 1
