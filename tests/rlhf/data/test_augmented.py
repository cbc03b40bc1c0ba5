"""Model-proposed data people confirmed, through the pipeline: a prompt variant follows its
source's split, and the report counts the augmented rows."""

import dataclasses
import random

from rlhf.data.export import iter_export_rows
from rlhf.data.pipeline import PipelineConfig, build_dataset
from rlhf.data.records import SPLITS, LabelRecord
from rlhf.data.splits import SplitConfig
from tests.rlhf.data.test_pipeline import distinct_records, pairwise_record, sentence

CONFIG = PipelineConfig(split=SplitConfig(seed=11, validation=0.2, test=0.2))


def row_splits(export_dir, shape="preference") -> dict[str, str]:
    """task key ("T12") -> split of its rows."""
    return {
        row["id"].split(":")[0]: split
        for split in SPLITS
        for row in iter_export_rows(export_dir, shape, split)
    }


def variants_of(sources: list[LabelRecord], start: int, *, lineage=True) -> list[LabelRecord]:
    """One reworded prompt per source (new words, so no near duplicate of it), answered anew."""
    rng = random.Random(start)
    out = []
    for offset, source in enumerate(sources):
        record = pairwise_record(start + offset, sentence(rng), sentence(rng), sentence(rng))
        if lineage:
            record = dataclasses.replace(record, source_prompt=source.prompt)
        out.append(record)
    return out


def test_a_variant_is_split_with_its_source_and_counted_as_augmented(tmp_path):
    # given 200 tasks, and a confirmed variant of each of the first 150
    sources = distinct_records(200, seed=4)
    variants = variants_of(sources[:150], start=1001)

    # when the pipeline runs
    result = build_dataset(sources + variants, config=CONFIG, export_dir=tmp_path / "out")

    # then every variant's rows are on its source's side, and the report says so
    side = row_splits(tmp_path / "out")
    for offset in range(150):
        assert side[f"T{1001 + offset}"] == side[f"T{1 + offset}"]
    assert result.report["leakage"]["variant_prompts"] == 150
    assert result.report["leakage"]["variants_across_splits"] == 0
    assert result.report["leakage"]["ok"]
    augmented = result.report["augmented"]
    assert augmented["variant_tasks"] == 150
    assert augmented["rows"]["preference"] == 150
    assert augmented["rows"]["prompt_only"] == 150
    assert augmented["model_corrections"] == 0
    # and the sources stay where they were without any variant
    build_dataset(sources, config=CONFIG, export_dir=tmp_path / "plain")
    plain = row_splits(tmp_path / "plain")
    assert all(side[f"T{t}"] == plain[f"T{t}"] for t in range(1, 201))


def test_without_lineage_the_same_variants_would_cross_splits(tmp_path):
    # The control: the same rewordings with no source recorded land on their own hash's
    # side, so some of 150 sit across from their source (what the lineage prevents).
    sources = distinct_records(200, seed=4)
    variants = variants_of(sources[:150], start=1001, lineage=False)
    build_dataset(sources + variants, config=CONFIG, export_dir=tmp_path / "out")
    side = row_splits(tmp_path / "out")
    crossing = sum(side[f"T{1001 + i}"] != side[f"T{1 + i}"] for i in range(150))
    assert crossing > 20


def test_a_variant_whose_source_has_no_label_takes_the_split_its_source_would_have(tmp_path):
    # given sources exported alone, then variants of them exported without the sources
    sources = distinct_records(120, seed=8)
    build_dataset(sources, config=CONFIG, export_dir=tmp_path / "sources")
    variants = variants_of(sources, start=2001)
    build_dataset(variants, config=CONFIG, export_dir=tmp_path / "variants")

    # then each variant sits where its source sat: adding the source later moves nothing
    of_source = row_splits(tmp_path / "sources")
    of_variant = row_splits(tmp_path / "variants")
    assert all(of_variant[f"T{2001 + i}"] == of_source[f"T{1 + i}"] for i in range(120))


def test_two_variants_of_one_source_share_its_split(tmp_path):
    sources = distinct_records(60, seed=9)
    first = variants_of(sources, start=3001)
    second = variants_of(sources, start=4001)
    build_dataset(sources + first + second, config=CONFIG, export_dir=tmp_path / "out")
    side = row_splits(tmp_path / "out")
    for i in range(60):
        assert side[f"T{3001 + i}"] == side[f"T{4001 + i}"] == side[f"T{1 + i}"]


def confirm_record(task_id, label_id, prompt, original, decision, final):
    payload = {
        "decision": decision,
        "proposal_id": 1,
        "proposal_kind": "correction",
        "proposed_text": final,
        "final_text": None if decision == "reject" else final,
    }
    if decision != "reject":
        payload.update(
            response_id=task_id * 10 + 1,
            original_text=original,
            corrected_text=final,
            unchanged=False,
        )
    return LabelRecord(
        label_id=label_id,
        task_id=task_id,
        kind="confirm",
        annotator_id=2,
        payload=payload,
        prompt_id=task_id,
        prompt=[{"role": "user", "content": prompt}],
        responses={task_id * 10 + 1: original},
    )


def test_a_confirmed_model_correction_reads_as_a_correction_and_a_rejected_one_as_nothing(
    tmp_path,
):
    rng = random.Random(5)
    kept = confirm_record(1, 11, sentence(rng), sentence(rng), "edit", sentence(rng))
    rejected = confirm_record(2, 12, sentence(rng), sentence(rng), "reject", sentence(rng))
    variant_decision = dataclasses.replace(
        confirm_record(3, 13, sentence(rng), sentence(rng), "confirm", sentence(rng)),
        payload={"decision": "confirm", "proposal_kind": "prompt_variant", "final_text": "x"},
        responses={},
    )

    result = build_dataset(
        [kept, rejected, variant_decision], config=CONFIG, export_dir=tmp_path / "out"
    )

    rows = [
        row for split in SPLITS for row in iter_export_rows(tmp_path / "out", "preference", split)
    ]
    assert [(r["id"], r["chosen"][0]["content"]) for r in rows] == [
        ("L11:c11>r11", kept.payload["corrected_text"])
    ]
    assert result.report["input"]["tasks"] == 1
    augmented = result.report["augmented"]
    assert augmented["model_corrections"] == 1
    assert augmented["rows"]["preference"] == 1
    assert augmented["rows"]["sft"] == 1


def test_a_variant_follows_its_source_into_the_source_s_near_duplicate_cluster(tmp_path):
    # given prompts P, then S (P with one word added: a near duplicate, so S is split with
    # P's cluster), then a variant V of S: V must follow S, whose split P's hash decides
    rng = random.Random(12)
    earlier = distinct_records(100, seed=13)
    near = [
        pairwise_record(
            500 + i, record.prompt[0]["content"] + " indeed", sentence(rng), sentence(rng)
        )
        for i, record in enumerate(earlier)
    ]
    variants = variants_of(near, start=5001)

    result = build_dataset(earlier + near + variants, config=CONFIG, export_dir=tmp_path / "o")

    side = row_splits(tmp_path / "o")
    for i in range(100):
        assert side[f"T{5001 + i}"] == side[f"T{500 + i}"] == side[f"T{1 + i}"]
    assert result.report["leakage"]["ok"]
