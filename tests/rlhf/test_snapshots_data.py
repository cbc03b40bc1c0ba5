"""Snapshots on PostgreSQL with hostile text, near duplicates and growing data."""

import json
import random
from pathlib import Path

import pytest

from annotation.importers import import_file
from rlhf.data.export import iter_export_rows
from rlhf.data.records import SPLITS
from rlhf.snapshots import services

pytestmark = pytest.mark.postgres

VOCAB = [
    "apple", "river", "stone", "cloud", "garden", "engine", "violet", "marble", "candle",
    "window", "forest", "silver", "copper", "ladder", "pepper", "rocket", "saddle", "thunder",
    "velvet", "walnut", "harbor", "island", "jacket", "kettle", "lemon",
]  # fmt: skip


def words(seed: int, n: int = 30) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def trl_rows(rows: list[dict]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def import_rows(project, engineer, rows, name="rows.jsonl"):
    import_file(
        project=project, data=trl_rows(rows), filename=name, kind="preferences",
        created_by=engineer, annotator_name="crowd",
    )  # fmt: skip


def build(project, engineer, **config):
    snapshot = services.snapshot_create(project=project, created_by=engineer, config=config)
    snapshot.refresh_from_db()
    return snapshot


def rows_of(snapshot, shape="preference"):
    export = Path(snapshot.export_path)
    return {split: list(iter_export_rows(export, shape, split)) for split in SPLITS}


def test_hostile_text_is_cleaned_and_counted_and_near_duplicates_removed(
    project, engineer, snapshot_settings
):
    # given labelled pairs whose text is hostile, plus one near duplicate and one distinct
    hostile = [
        {
            "prompt": "Cafe\u0301 menu?\u200b <b>now</b>",
            "chosen": "Mail chef@example.com or call +1 (555) 123-4567.",
            "rejected": "Card 4111 1111 1111 1111, key sk-abcdefghijklmnopqrstuvwx",
        },
        {
            "prompt": "\u202eevil\u202c question &amp; answer\x07",
            "chosen": "AKIAIOSFODNN7EXAMPLE is my key",
            "rejected": "<script>alert(1)</script>fine",
        },
    ]
    base = {"prompt": words(1), "chosen": words(2), "rejected": words(3)}
    edited = base["prompt"].split()
    edited[5] = "EDITED!"
    near = {**base, "prompt": " ".join(edited)}
    distinct = {"prompt": words(9), "chosen": words(10), "rejected": words(11)}
    import_rows(project, engineer, [*hostile, base, near, distinct])

    # when snapshotted
    snapshot = build(project, engineer)

    # then the exported text is clean, the report counts every step and PII type
    text = json.dumps(rows_of(snapshot), ensure_ascii=False)
    for bad in ("\u200b", "\u202e", "\x07", "<b>", "<script>", "chef@", "4111", "sk-ab", "AKIA"):
        assert bad not in text
    assert "Café menu? now" in text
    cleaning = snapshot.report["cleaning"]
    assert cleaning["pii"] == {
        "api_key": 2, "credit_card": 1, "email": 1, "phone": 1
    }  # fmt: skip
    assert cleaning["changed"]["nfc"] == 1
    assert cleaning["changed"]["zero_width"] == 2
    assert cleaning["changed"]["html"] == 3
    assert cleaning["changed"]["control"] == 1
    # the near duplicate went (exact answers, near prompt); the distinct pair stayed
    assert snapshot.report["removed"]["preference"] == {"near_duplicate": 1}
    assert sum(snapshot.row_counts["preference"].values()) == 4


def test_splits_hold_as_the_project_grows(project, engineer, snapshot_settings):
    # given 60 labelled pairs snapshotted
    first = [{"prompt": words(i) + f" q{i}", "chosen": words(i + 100), "rejected": words(i + 200)}
             for i in range(60)]  # fmt: skip
    import_rows(project, engineer, first, "a.jsonl")
    config = {"split": {"seed": 7, "validation": 0.2, "test": 0.2}}
    before = build(project, engineer, **config)

    # when 60 more arrive and a new snapshot is taken
    more = [{"prompt": words(i) + f" q{i}", "chosen": words(i + 100), "rejected": words(i + 200)}
            for i in range(60, 120)]  # fmt: skip
    import_rows(project, engineer, more, "b.jsonl")
    after = build(project, engineer, **config)

    # then every earlier row is on the side it was, and no prompt is on two sides
    side_before = {r["id"]: s for s, rows in rows_of(before).items() for r in rows}
    side_after = {r["id"]: s for s, rows in rows_of(after).items() for r in rows}
    assert len(side_before) == 60
    assert len(side_after) == 120
    assert all(side_after[i] == s for i, s in side_before.items())
    prompts = {}
    for split, rows in rows_of(after).items():
        for row in rows:
            assert prompts.setdefault(json.dumps(row["prompt"]), split) == split
    assert after.report["leakage"]["ok"] is True
    assert before.label_count == 60
    assert after.label_count == 120
