"""Pinned evaluation prompts stay out of training snapshots."""

import pytest
from django.db import transaction

from annotation.models import Label
from models_registry.review_settings import eval_prompts_pin
from rlhf.data.idcodec import decode_ids
from rlhf.snapshots import services


def test_labels_on_pinned_evaluation_prompts_are_left_out_of_snapshots(
    snapshot_settings, small_project, engineer
):
    # given 40 labelled pairs, three of whose prompts are pinned for evaluation
    labels = Label.objects.filter(task__project=small_project).select_related("task")
    pinned_prompts = sorted({label.task.prompt_id for label in labels})[:3]
    eval_prompts_pin(project=small_project, prompt_ids=pinned_prompts)
    small_project.refresh_from_db()
    held_out = {label.pk for label in labels if label.task.prompt_id in pinned_prompts}
    assert held_out
    # when a snapshot is built
    with transaction.atomic():
        snapshot = services.snapshot_create(
            project=small_project, created_by=engineer, enqueue=False
        )
    snapshot = services.snapshot_build(snapshot_id=snapshot.pk)
    # then it holds every label but those, and records which prompts it left out
    frozen = set(decode_ids(bytes(snapshot.label_ids)).tolist())
    assert frozen == {label.pk for label in labels} - held_out
    assert snapshot.label_count == labels.count() - len(held_out)
    assert snapshot.config["excluded_eval_prompt_ids"] == pinned_prompts


@pytest.mark.postgres
def test_a_snapshot_builds_in_worker_processes_started_by_a_plain_process(
    snapshot_settings, small_project, engineer
):
    """Worker processes read label shards whose module imports Django models: the pool sets
    Django up in each worker first (spawned workers start without it)."""
    with transaction.atomic():
        snapshot = services.snapshot_create(
            project=small_project, created_by=engineer, enqueue=False
        )
    in_workers = services.snapshot_build(snapshot_id=snapshot.pk, workers=2)
    assert in_workers.status == "ready"
    with transaction.atomic():
        again = services.snapshot_create(project=small_project, created_by=engineer, enqueue=False)
    in_process = services.snapshot_build(snapshot_id=again.pk, workers=0)
    assert in_workers.content_sha256 == in_process.content_sha256
    assert in_workers.row_counts == in_process.row_counts
