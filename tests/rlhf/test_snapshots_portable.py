"""Snapshots on whatever database the platform runs on: the embedded SQLite default reads
labels through the ORM, PostgreSQL through its streaming reader; both give the same records."""

import json

import numpy as np
import pytest

from annotation import services as annotation_services
from annotation.models import Label
from formats.preference import parse_hh_pair
from rlhf.models import SnapshotStatus
from rlhf.snapshots import services
from rlhf.snapshots.readers import iter_label_records, iter_label_records_orm
from tests.hh_dialogues import hh_rows


def test_a_snapshot_builds_on_the_current_database(small_project, engineer, snapshot_settings):
    # given 40 HH pairs imported as labels
    # when a snapshot is built
    snapshot = services.snapshot_create(project=small_project, created_by=engineer, name="s")
    snapshot.refresh_from_db()
    # then every label is frozen and every pair is kept or accounted for as removed
    assert snapshot.status == SnapshotStatus.READY
    assert snapshot.label_count == 40
    kept = sum(snapshot.row_counts["preference"].values())
    removed = sum(snapshot.report["removed"]["preference"].values())
    assert kept + removed == 40
    assert snapshot.report["leakage"]["ok"] is True


@pytest.mark.postgres
def test_the_orm_reader_matches_the_postgres_reader(small_project, engineer):
    # given labels, one of them edited after being frozen at version 1
    labels = list(Label.objects.order_by("id").values_list("id", "version"))
    ids = np.asarray([i for i, _ in labels], np.int64)
    versions = np.asarray([v for _, v in labels], np.int64)
    first = Label.objects.order_by("id").first()
    choice = "B" if first.payload["outcome"] == "A" else "A"
    annotation_services.label_edit(label=first, editor=first.annotator, payload={"choice": choice})

    def normalise(record):
        payload = record.payload
        payload = json.loads(payload) if isinstance(payload, str) else payload
        prompt = record.prompt
        prompt = json.loads(prompt) if isinstance(prompt, str) else prompt
        return (record.label_id, record.task_id, record.kind, record.annotator_id, payload,
                record.prompt_id, prompt, record.responses, record.source)  # fmt: skip

    # when both readers read the frozen versions
    fast = [normalise(r) for r in iter_label_records(ids, versions)]
    portable = [normalise(r) for r in iter_label_records_orm(ids, versions, batch=7)]
    # then they agree record for record, and the edit is not seen
    assert portable == fast
    assert len(fast) == 40
    assert fast[0][4]["outcome"] != choice
    # and what they read is the 40 imported pairs' prompts
    assert sorted(json.dumps(r[6]) for r in fast) == sorted(
        json.dumps(parse_hh_pair(row).prompt) for row in hh_rows(40)
    )


def test_gold_items_and_paused_annotators_stay_out_of_snapshots(
    small_project, engineer, snapshot_settings
):
    from annotation.quality import services as quality

    # given 40 imported labels: one task is made gold, and the importing annotator is paused
    task_label = Label.objects.select_related("task", "annotator").order_by("id").first()
    quality.gold_mark(task=task_label.task, payload={"choice": "A"}, by=engineer)
    quality.annotator_pause(
        project=small_project, annotator=task_label.annotator, reason="failed gold"
    )
    # when a snapshot is built
    snapshot = services.snapshot_create(project=small_project, created_by=engineer, name="g")
    snapshot.refresh_from_db()
    # then the gold task's label is not frozen, and the paused annotator's labels are excluded
    assert snapshot.label_count == 39
    assert snapshot.config["aggregation"]["exclude_annotators"] == [task_label.annotator_id]
    assert sum(snapshot.row_counts.get("preference", {}).values()) == 0
