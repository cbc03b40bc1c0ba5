"""A sealed personal-data text and the snapshots (issue 15, finding 12): a snapshot that holds
it is withdrawn (no download, no export, no new run; its files are not rewritten), one that
does not is left alone, and a new snapshot leaves the text's task out and says so.

Each test failed on the code before sealing existed (no ``text_seal``, no withdrawal)."""

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.audit import DataAuditEvent
from annotation.models import SEALED_PLACEHOLDER, Label, Task
from annotation.roles import Role
from annotation.services.sealing import text_seal
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun
from rlhf.runs.selectors import training_run_launch_choices
from rlhf.snapshots.services import snapshot_create


@pytest.fixture
def api(engineer):
    client = APIClient()
    client.force_authenticate(engineer)
    return client


@pytest.fixture
def admin(small_project, make_user):
    user = make_user("ada-admin")
    annotation_services.membership_set(project=small_project, user=user, role=Role.ADMIN)
    return user


def build(project, user, capture):
    with capture(execute=True):
        snapshot = snapshot_create(
            project=project,
            created_by=user,
            config={"split": {"seed": 2, "validation": 0.2, "test": 0.2}},
        )
    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.READY
    return snapshot


def export_text(snapshot) -> str:
    return "".join(
        p.read_text(errors="replace")
        for p in Path(snapshot.export_path).rglob("*")
        if p.is_file() and p.suffix in (".jsonl", ".md", ".json")
    )


def labelled_response(project):
    """A response of a labelled task, whose text is in the snapshot's export."""
    task = Task.objects.filter(project=project, labels__isnull=False).order_by("pk").first()
    return task, task.items.order_by("position").first().response


def test_a_snapshot_holding_a_sealed_text_is_withdrawn_and_its_files_answer_410(
    small_project, engineer, admin, api, snapshot_settings, django_capture_on_commit_callbacks
):
    # given a ready snapshot, a run trained on it, and one of its texts
    snapshot = build(small_project, engineer, django_capture_on_commit_callbacks)
    run = TrainingRun.objects.create(
        project=small_project, method="reward", method_title="Reward model", config={},
        dataset_snapshot=snapshot, data_path=snapshot.export_path, status=RunStatus.SUCCEEDED,
    )  # fmt: skip
    _task, response = labelled_response(small_project)
    clear = response.text
    assert clear in export_text(snapshot)
    files_before = {p: p.read_bytes() for p in Path(snapshot.export_path).rglob("*") if p.is_file()}
    assert api.get(reverse("api-snapshot-files", args=[snapshot.pk])).status_code == 200

    # when a project admin seals it
    details = text_seal(project=small_project, actor=admin, reason="an address", response=response)

    # then the snapshot is withdrawn, and the run trained on it is listed in the audit event
    snapshot.refresh_from_db()
    assert snapshot.withdrawn_at is not None
    assert f"response:{response.pk}" in snapshot.withdrawn_reason
    assert (details["withdrawn_snapshots"], details["training_runs"]) == ([snapshot.pk], [run.pk])
    event = DataAuditEvent.objects.get(action="text_sealed")
    assert event.details["withdrawn_snapshots"] == [snapshot.pk]
    assert event.details["training_runs"] == [run.pk]
    # its files, archives and exports answer 410 with the reason
    for answer in (
        api.get(reverse("api-snapshot-files", args=[snapshot.pk])),
        api.get(reverse("api-snapshot-download", args=[snapshot.pk]), {"file": "export.tar"}),
        api.get(
            reverse("api-snapshot-download", args=[snapshot.pk]), {"file": "preference/train.jsonl"}
        ),
        api.post(reverse("api-snapshot-exports", args=[snapshot.pk]), {"name": "again"}),
    ):
        assert answer.status_code == 410, answer.content
        assert answer.json()["error"] == "snapshot_withdrawn"
        assert "withdrawn" in answer.json()["detail"]
    # no new run starts from it (400 naming the field); the old run keeps its record
    launch = api.post(
        reverse("api-runs", args=[small_project.pk]),
        {"method": "reward", "snapshot": snapshot.pk},
        format="json",
    )
    assert launch.status_code == 400, launch.content
    assert (launch.json()["error"], launch.json()["field"]) == ("snapshot_withdrawn", "snapshot")
    assert TrainingRun.objects.filter(dataset_snapshot=snapshot).count() == 1
    # the pages say so, and the launch form no longer offers it
    web = Client()
    web.force_login(engineer)
    page = web.get(reverse("rlhf-pages:snapshot", args=[snapshot.pk])).content.decode()
    assert "Withdrawn on" in page
    assert "sealed as personal data" in page
    listing = web.get(reverse("rlhf-pages:snapshots", args=[small_project.pk])).content.decode()
    assert 'data-testid="snapshot-withdrawn"' in listing
    assert training_run_launch_choices(project=small_project)["snapshots"] == []
    # the snapshot API says it is withdrawn; its files were not rewritten
    detail = api.get(reverse("api-snapshot", args=[snapshot.pk])).json()
    assert detail["withdrawn_at"]
    assert "sealed" in detail["withdrawn_reason"]
    assert {p: p.read_bytes() for p in files_before} == files_before


def test_a_snapshot_that_does_not_hold_the_text_stays_and_a_new_one_leaves_the_task_out(
    small_project, engineer, admin, api, snapshot_settings, django_capture_on_commit_callbacks
):
    # given a snapshot built before a task was added (it cannot hold that task's texts)
    before = build(small_project, engineer, django_capture_on_commit_callbacks)
    task, response = labelled_response(small_project)
    labels_of_task = Label.objects.filter(task=task).count()
    assert labels_of_task >= 1
    late, _ = annotation_services.task_create(
        project=small_project, kind="pairwise", messages=[{"role": "user", "content": "late?"}],
        responses=[{"text": "late answer one", "origin": "model", "model_name": "m"},
                   {"text": "late answer two", "origin": "model", "model_name": "m"}],
    )  # fmt: skip
    text_seal(
        project=small_project, actor=admin, reason="x",
        response=late.items.order_by("position").first().response,
    )  # fmt: skip
    before.refresh_from_db()
    assert before.withdrawn_at is None
    assert api.get(reverse("api-snapshot-files", args=[before.pk])).status_code == 200

    # when a text of a labelled task is sealed and a new snapshot is built
    clear = response.text
    text_seal(project=small_project, actor=admin, reason="a name", response=response)
    after = build(small_project, engineer, django_capture_on_commit_callbacks)

    # then the new snapshot leaves that task's labels out, says so, and holds no clear text
    assert after.label_count == before.label_count - labels_of_task
    assert after.report["sealed_labels_dropped"] == labels_of_task
    assert "sealed as personal data" in after.data_card
    exported = export_text(after)
    assert clear not in exported
    assert SEALED_PLACEHOLDER not in exported
    assert after.withdrawn_at is None
    assert DatasetSnapshot.objects.get(pk=before.pk).withdrawn_at is not None
    assert json.loads(json.dumps(after.report))["sealed_labels_dropped"] == labels_of_task
