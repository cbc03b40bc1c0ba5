"""Undo of an annotator's last submit or skip: the label is withdrawn (or the skip taken back)
and the task comes back to them, within a short window; refused once it is too late."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import IdempotencyRecord, Label, Lease, LeaseState, Task, TaskStatus
from annotation.opaque import task_ref
from annotation.quality.models import Adjudication
from annotation.roles import Role
from config.errors import Conflict
from rlhf.models import DatasetSnapshot

pytestmark = pytest.mark.django_db

PAIR = {"choice": "A", "strength": "clear"}


def _undo_url(task):
    return f"/api/tasks/{task_ref(task.pk)}/undo/"


def _state(task, annotator):
    task = Task.objects.get(pk=task.pk)
    lease = Lease.objects.filter(task=task, annotator=annotator).first()
    return (
        task.label_count,
        task.status,
        Label.objects.filter(task=task, annotator=annotator).count(),
        lease.state if lease else None,
    )


@pytest.fixture
def one_pair(project, make_task):
    """A pairwise task of a project that takes one label per task."""
    project.overlap = 1
    project.save()
    task = make_task()
    Task.objects.filter(pk=task.pk).update(required_labels=1)
    return Task.objects.get(pk=task.pk)


def test_undoing_a_submit_withdraws_the_label_and_gives_the_task_back(
    client_for, annotator, one_pair
):
    # given a submitted label that finished its task (sent with an idempotency key)
    client = client_for(annotator)
    served = client.post(f"/api/projects/{one_pair.project_id}/tasks/next/", {}, format="json")
    ref = served.json()["task_id"]
    submitted = client.post(
        f"/api/tasks/{ref}/labels/",
        {"payload": PAIR},
        format="json",
        HTTP_IDEMPOTENCY_KEY="undo-test-key-1",
    )
    assert submitted.status_code == 201
    assert _state(one_pair, annotator) == (1, TaskStatus.DONE, 1, LeaseState.SUBMITTED)
    # when the annotator undoes it
    undone = client.post(f"/api/tasks/{ref}/undo/", format="json")
    # then the label is gone, the task is open with its lease live again, and shown again
    assert undone.status_code == 200, undone.json()
    assert undone.json()["task_id"] == ref
    assert _state(one_pair, annotator) == (0, TaskStatus.OPEN, 0, LeaseState.ACTIVE)
    assert not IdempotencyRecord.objects.filter(user=annotator).exists()
    again = client.post(f"/api/projects/{one_pair.project_id}/tasks/next/", {}, format="json")
    assert again.json()["task_id"] == ref
    # and a fresh answer is accepted
    resubmitted = client.post(f"/api/tasks/{ref}/labels/", {"payload": {"choice": "B"}}, "json")
    assert resubmitted.status_code == 201
    assert Label.objects.get(task=one_pair).payload["outcome"] == "B"


def test_undoing_a_skip_gives_the_task_back(client_for, annotator, one_pair):
    client = client_for(annotator)
    ref = client.post(f"/api/projects/{one_pair.project_id}/tasks/next/", {}, "json").json()[
        "task_id"
    ]
    client.post(f"/api/tasks/{ref}/skip/", {"reason": "unsure"}, format="json")
    assert (
        client.post(f"/api/projects/{one_pair.project_id}/tasks/next/", {}, "json").status_code
        == 204
    )
    undone = client.post(f"/api/tasks/{ref}/undo/", format="json")
    assert undone.status_code == 200
    lease = Lease.objects.get(task=one_pair, annotator=annotator)
    assert (lease.state, lease.skip_reason, lease.closed_at) == (LeaseState.ACTIVE, "", None)
    served = client.post(f"/api/projects/{one_pair.project_id}/tasks/next/", {}, "json")
    assert served.json()["task_id"] == ref


def test_undo_is_refused_after_the_window_and_nothing_changes(
    client_for, annotator, one_pair, settings
):
    settings.TANDEM_UNDO_SECONDS = 60
    lease = services.task_claim_next(project=one_pair.project, annotator=annotator)
    label = services.label_submit(task=lease.task, annotator=annotator, payload=PAIR).label
    Label.objects.filter(pk=label.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    before = _state(one_pair, annotator)
    answer = client_for(annotator).post(_undo_url(one_pair), format="json")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "undo_window_closed",
        "detail": "the 60 seconds to undo this label have passed",
    }
    assert _state(one_pair, annotator) == before


def test_undo_follows_the_projects_edit_window_too(annotator, one_pair, settings):
    # given a long undo window, but a project whose labels may be changed for one hour only
    settings.TANDEM_UNDO_SECONDS = 3 * 3600
    services.project_settings_update(
        project=one_pair.project, changes={"labels": {"edit_window_hours": 1}}
    )
    lease = services.task_claim_next(project=one_pair.project, annotator=annotator)
    label = services.label_submit(task=lease.task, annotator=annotator, payload=PAIR).label
    Label.objects.filter(pk=label.pk).update(created_at=timezone.now() - timedelta(hours=2))
    with pytest.raises(Conflict) as refused:
        services.task_undo(task=one_pair, annotator=annotator)
    assert refused.value.code == "edit_window_closed"
    assert Label.objects.filter(pk=label.pk).exists()


def test_undo_is_refused_once_the_label_is_in_a_snapshot_or_adjudicated(
    client_for, annotator, one_pair, admin_user
):
    lease = services.task_claim_next(project=one_pair.project, annotator=annotator)
    label = services.label_submit(task=lease.task, annotator=annotator, payload=PAIR).label
    snapshot = DatasetSnapshot.objects.create(
        project=one_pair.project, max_label_id=label.pk, config={}, kinds=["pairwise"]
    )
    answer = client_for(annotator).post(_undo_url(one_pair), format="json")
    assert (answer.status_code, answer.json()["error"]) == (409, "label_in_snapshot")
    assert "already in a dataset snapshot" in answer.json()["detail"]
    # a failed snapshot froze nothing; an adjudication closes the task all the same
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(status="failed")
    Adjudication.objects.create(
        task=one_pair,
        project=one_pair.project,
        reviewer=admin_user,
        payload={"outcome": "A"},
        reason="clear",
    )
    answer = client_for(annotator).post(_undo_url(one_pair), format="json")
    assert (answer.status_code, answer.json()["error"]) == (409, "task_closed")
    assert _state(one_pair, annotator) == (1, TaskStatus.DONE, 1, LeaseState.SUBMITTED)


def test_undo_of_a_skip_whose_task_went_to_others_is_refused(
    client_for, annotator, one_pair, member
):
    client = client_for(annotator)
    services.task_claim_next(project=one_pair.project, annotator=annotator)
    services.task_skip(task=one_pair, annotator=annotator)
    other = member(Role.ANNOTATOR, "olivia")
    assert (
        services.task_claim_next(project=one_pair.project, annotator=other).task_id == one_pair.pk
    )
    answer = client.post(_undo_url(one_pair), format="json")
    assert (answer.status_code, answer.json()["error"]) == (409, "task_full")
    assert Lease.objects.get(task=one_pair, annotator=annotator).state == LeaseState.SKIPPED


def test_nothing_to_undo_and_other_peoples_tasks_are_not_found(
    client_for, annotator, one_pair, member
):
    services.task_claim_next(project=one_pair.project, annotator=annotator)
    answer = client_for(annotator).post(_undo_url(one_pair), format="json")
    assert (answer.status_code, answer.json()["error"]) == (409, "nothing_to_undo")
    stranger = member(Role.ANNOTATOR, "sam")
    assert client_for(stranger).post(_undo_url(one_pair), format="json").status_code == 404
