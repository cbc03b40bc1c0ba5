"""The whole pipeline on small records: de-duplication, splits, leakage, export layout."""

import json
import random

import datasets
import pyarrow.parquet as pq
import pytest

from rlhf.data.export import iter_export_rows, reexport
from rlhf.data.pipeline import DedupConfig, PipelineConfig, build_dataset
from rlhf.data.records import SHAPES, SPLITS, LabelRecord
from rlhf.data.splits import SplitConfig
from rlhf.data.truncation import TruncationConfig

VOCAB = [
    "apple",
    "river",
    "stone",
    "cloud",
    "garden",
    "engine",
    "violet",
    "marble",
    "candle",
    "window",
    "forest",
    "silver",
    "copper",
    "ladder",
    "pepper",
    "rocket",
    "saddle",
    "thunder",
    "velvet",
    "walnut",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "lemon",
    "meadow",
    "needle",
    "orchid",
    "pillow",
    "quartz",
    "ribbon",
    "sunset",
    "tunnel",
    "umbrella",
    "valley",
    "wagon",
    "yellow",
    "zebra",
]


def sentence(rng, n=40):
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def pairwise_record(task_id, prompt, a, b, outcome="A", label_id=None, prompt_id=None):
    return LabelRecord(
        label_id=label_id or task_id,
        task_id=task_id,
        kind="pairwise",
        annotator_id=1,
        payload={"outcome": outcome, "strength": "clear"},
        prompt_id=prompt_id or task_id,
        prompt=[{"role": "user", "content": prompt}],
        responses={task_id * 10 + 1: a, task_id * 10 + 2: b},
    )


def distinct_records(n, seed=0, start=1):
    rng = random.Random(seed)
    return [
        pairwise_record(t, sentence(rng), sentence(rng), sentence(rng))
        for t in range(start, start + n)
    ]


def read_ids(export_dir, shape):
    return {
        split: [row["id"] for row in iter_export_rows(export_dir, shape, split)] for split in SPLITS
    }


def test_near_duplicates_are_caught_and_distinct_texts_are_not(tmp_path):
    # given 50 distinct tasks, a task repeating task 1 with one word changed in the prompt
    # and each answer, and an exact repeat of task 2
    records = distinct_records(50)
    first, second = records[0], records[1]

    def edit(text):
        words = text.split()
        words[len(words) // 2] = "EDITED"
        return " ".join(words)

    a, b = first.responses.values()
    records.append(pairwise_record(51, edit(first.prompt[0]["content"]), edit(a), edit(b)))
    records.append(pairwise_record(52, second.prompt[0]["content"], *second.responses.values()))

    # when the pipeline runs
    result = build_dataset(records, config=PipelineConfig(), export_dir=tmp_path / "out")

    # then the near duplicate and the exact duplicate are removed, nothing else
    removed = result.report["removed"]["preference"]
    assert removed == {"exact_duplicate": 1, "near_duplicate": 1}
    assert result.report["removed"]["prompt_only"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert sum(result.report["splits"]["preference"].values()) == 50
    assert result.report["dedup"]["prompts"]["near_pairs"] == 1
    ids = [i for split in read_ids(tmp_path / "out", "preference").values() for i in split]
    assert "T51:r511>r512" not in ids
    assert "T52:r521>r522" not in ids


def test_near_dup_off_keeps_near_duplicates_but_still_drops_exact_ones(tmp_path):
    records = distinct_records(5)
    edited = records[0].prompt[0]["content"] + " extra"
    records.append(pairwise_record(6, edited, *records[0].responses.values()))
    records.append(
        pairwise_record(7, records[1].prompt[0]["content"], *records[1].responses.values())
    )
    config = PipelineConfig(dedup=DedupConfig(near=False))
    result = build_dataset(records, config=config, export_dir=tmp_path / "out")
    assert result.report["removed"]["preference"] == {"exact_duplicate": 1}
    assert sum(result.report["splits"]["preference"].values()) == 6


def test_splits_are_stable_as_data_grows_and_no_prompt_is_in_two_splits(tmp_path):
    # given 300 tasks exported, then the same 300 plus 300 more (two of them near
    # duplicates of earlier prompts)
    config = PipelineConfig(split=SplitConfig(seed=5, validation=0.2, test=0.2))
    small = distinct_records(300, seed=1)
    grown = small + distinct_records(300, seed=2, start=301)
    for source, t in ((small[3], 601), (small[4], 602)):
        grown.append(
            pairwise_record(
                t, source.prompt[0]["content"] + " indeed", sentence(random.Random(t)), "no"
            )
        )

    # when both are exported
    before = build_dataset(small, config=config, export_dir=tmp_path / "a")
    after = build_dataset(grown, config=config, export_dir=tmp_path / "b")

    # then every earlier row is on the same side as before
    old = read_ids(tmp_path / "a", "preference")
    new = read_ids(tmp_path / "b", "preference")
    for split in SPLITS:
        assert set(old[split]) <= set(new[split])
    # near-duplicate prompts followed their earlier cousin
    side = {i.split(":")[0]: s for s, ids in new.items() for i in ids}
    assert side["T601"] == side["T4"]
    assert side["T602"] == side["T5"]
    # no prompt text appears in two splits of the file, and the report agrees
    seen = {}
    for split in SPLITS:
        for row in iter_export_rows(tmp_path / "b", "preference", split):
            text = json.dumps(row["prompt"])
            assert seen.setdefault(text, split) == split
    assert after.report["leakage"]["ok"]
    assert before.report["leakage"]["ok"]
    assert after.report["leakage"]["near_duplicate_prompt_pairs_checked"] == 2


def test_export_layout_formats_agree_and_hash_is_reproducible(tmp_path):
    # given a mixed set: pairwise, a tie, both-bad, a ranking and a correction
    rng = random.Random(3)
    records = distinct_records(20)
    records.append(pairwise_record(21, sentence(rng), sentence(rng), sentence(rng), "tie"))
    records.append(pairwise_record(22, sentence(rng), sentence(rng), sentence(rng), "both_bad"))
    records.append(
        LabelRecord(
            label_id=23,
            task_id=23,
            kind="ranking",
            annotator_id=2,
            payload={"ranking": [[231], [232], [233]]},
            prompt_id=23,
            prompt=[{"role": "user", "content": sentence(rng)}],
            responses={231: sentence(rng), 232: sentence(rng), 233: sentence(rng)},
        )
    )
    records.append(
        LabelRecord(
            label_id=24,
            task_id=24,
            kind="correction",
            annotator_id=3,
            payload={"response_id": 241, "corrected_text": sentence(rng), "unchanged": False},
            prompt_id=24,
            prompt=[{"role": "user", "content": sentence(rng)}],
            responses={241: sentence(rng)},
        )
    )
    config = PipelineConfig(split=SplitConfig(seed=0, validation=0.2, test=0.2))

    # when exported twice
    first = build_dataset(records, config=config, export_dir=tmp_path / "one")
    second = build_dataset(records, config=config, export_dir=tmp_path / "two")

    # then the manifest has the agreed layout and counts, equal across the three formats
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["format"] == "tandem-export/1"
    totals = {shape: sum(manifest["shapes"][shape].values()) for shape in SHAPES}
    assert totals == {
        "preference": 20 + 3 + 1, "sft": 1, "kto": 40 + 2 + 2 + 2, "prompt_only": 24, "flags": 0,
        "rubric_preference": 0, "score": 0,
    }  # fmt: skip
    for shape in SHAPES:
        hf = datasets.load_from_disk(str(tmp_path / "one" / shape / "hf"))
        assert list(hf) == list(SPLITS)
        for split in SPLITS:
            n = manifest["shapes"][shape][split]
            assert pq.read_table(tmp_path / "one" / shape / f"{split}.parquet").num_rows == n
            assert hf[split].num_rows == n
            assert len(list(iter_export_rows(tmp_path / "one", shape, split))) == n
    row = next(
        r
        for s in SPLITS
        for r in iter_export_rows(tmp_path / "one", "preference", s)
        if r["source"] == "correction"
    )
    assert row["chosen"][0]["role"] == "assistant"
    assert row["margin"] is None
    assert first.content_sha256 == second.content_sha256
    assert first.report["aggregation"]["decisions"]["pairwise_tie"] == 1


def test_reexport_truncates_long_prompts_and_counts_them(tmp_path):
    # given an export whose prompts are 40 words long
    build_dataset(distinct_records(10), config=PipelineConfig(), export_dir=tmp_path / "src")

    # when re-exported with a 50-character prompt budget
    manifest = reexport(
        tmp_path / "src", tmp_path / "dst", truncation=TruncationConfig(max_prompt_chars=50)
    )

    # then every prompt was cut from the left, counted, and no row was lost
    assert manifest["truncation"]["rows_truncated"]["preference"] == 10
    rows = [r for s in SPLITS for r in iter_export_rows(tmp_path / "dst", "preference", s)]
    assert len(rows) == 10
    assert all(len(r["prompt"][0]["content"]) <= 50 for r in rows)


def test_empty_and_too_long_texts_drop_their_rows_with_reasons(tmp_path):
    records = distinct_records(3)
    records.append(pairwise_record(4, "<p> </p>", "fine answer here", "another one"))
    records.append(pairwise_record(5, "a fine question", "\u200b", "another one"))
    config = PipelineConfig()
    result = build_dataset(records, config=config, export_dir=tmp_path / "out")
    assert result.report["removed"]["preference"] == {"answer_empty": 1, "prompt_empty": 1}
    assert result.report["removed"]["prompt_only"] == {"prompt_empty": 1}
    assert result.report["cleaning"]["dropped"] == {"empty": 2}


@pytest.mark.slow
def test_worker_processes_give_the_same_result(tmp_path):
    records = distinct_records(200)
    config = PipelineConfig()
    inline = build_dataset(records, config=config, export_dir=tmp_path / "a", chunk_labels=50)
    pooled = build_dataset(
        records, config=config, export_dir=tmp_path / "b", chunk_labels=50, workers=2
    )
    assert inline.content_sha256 == pooled.content_sha256


@pytest.mark.slow
def test_dawid_skene_fits_on_every_shard_first_in_workers_as_inline(tmp_path):
    # given 40 tasks in chunks of a few tasks: two careful annotators pick the better answer,
    # three clickers always pick A (the better answer is A on even tasks, B on odd ones)
    rng = random.Random(3)
    records, label_id = [], 0
    for task in range(40):
        truth = "A" if task % 2 == 0 else "B"
        texts = {2 * task + 1000: sentence(rng), 2 * task + 1001: sentence(rng)}
        prompt = [{"role": "user", "content": sentence(rng)}]
        for annotator, outcome in [(1, truth), (2, truth), (3, "A"), (4, "A"), (5, "A")]:
            label_id += 1
            records.append(
                LabelRecord(label_id, task, "pairwise", annotator, {"outcome": outcome},
                            task, prompt, texts)
            )  # fmt: skip
    config = PipelineConfig.from_dict({"aggregation": {"policy": "dawid_skene"}})

    # when built inline and in two worker processes, 10 labels a chunk
    inline = build_dataset(records, config=config, export_dir=tmp_path / "a", chunk_labels=10)
    workers = build_dataset(
        records, config=config, export_dir=tmp_path / "b", chunk_labels=10, workers=2
    )

    # then both export the careful annotators' side of every task, row for row
    assert inline.content_sha256 == workers.content_sha256
    rows = {r["id"]: r for s in SPLITS for r in iter_export_rows(tmp_path / "a", "preference", s)}
    assert len(rows) == 40
    assert sum(row_id.endswith(">r" + str(1000 + 2 * int(row_id[1:].split(":")[0])))
               for row_id in rows) == 20  # fmt: skip
