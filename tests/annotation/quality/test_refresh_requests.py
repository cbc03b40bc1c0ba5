"""A quality refresh request can never stall: a failed enqueue or a lost job is retried."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from annotation.quality import services as quality
from annotation.quality import tasks as quality_tasks
from annotation.quality.models import QualityRefreshState

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueues(monkeypatch, queued_tasks):
    """Record each enqueue; ``fail`` holds how many of the next enqueues raise."""
    calls = {"ok": [], "fail": 0}

    def enqueue(project_id):
        if calls["fail"]:
            calls["fail"] -= 1
            raise ConnectionError("queue unreachable")
        calls["ok"].append(project_id)

    # The task object is a frozen dataclass: the module's name is replaced by a stand-in.
    monkeypatch.setattr(quality_tasks, "quality_refresh_job", SimpleNamespace(enqueue=enqueue))
    return calls


def test_a_failed_enqueue_is_logged_and_the_next_request_enqueues(
    enqueues, project, make_task, caplog
):
    # given a task whose change is committed while the queue is unreachable once
    task = make_task()
    enqueues["fail"] = 1
    with caplog.at_level(logging.ERROR, logger="annotation.quality.services.refresh"):
        quality.quality_task_changed(project_id=project.pk, task_ids=[task.pk])
    # then the failure is logged, nothing was enqueued, and no refresh is marked waiting
    assert "could not enqueue a quality refresh" in caplog.text
    assert enqueues["ok"] == []
    assert QualityRefreshState.objects.get(project=project).pending is False
    # when the next change requests a refresh, then it is enqueued
    quality.quality_task_changed(project_id=project.pk, task_ids=[task.pk])
    assert enqueues["ok"] == [project.pk]
    assert QualityRefreshState.objects.get(project=project).pending is True


def test_a_pending_request_older_than_the_bound_is_reclaimed(enqueues, project, settings):
    # given a refresh marked waiting long ago whose job never ran (a lost job, a dead worker)
    settings.TANDEM_QUALITY_REFRESH_STALE_SECONDS = 600
    long_ago = timezone.now() - timedelta(seconds=601)
    QualityRefreshState.objects.create(project=project, pending=True, requested_at=long_ago)
    # when a refresh is requested, then it is enqueued again and the request time moves on
    assert quality.quality_request_refresh(project_id=project.pk) is True
    assert enqueues["ok"] == [project.pk]
    state = QualityRefreshState.objects.get(project=project)
    assert state.pending is True
    assert state.requested_at > long_ago


def test_a_recent_pending_request_is_not_enqueued_twice(enqueues, project, settings):
    # given a refresh requested a moment ago
    settings.TANDEM_QUALITY_REFRESH_STALE_SECONDS = 600
    recent = timezone.now() - timedelta(seconds=5)
    QualityRefreshState.objects.create(project=project, pending=True, requested_at=recent)
    # when another request comes, then nothing is enqueued and the state is unchanged
    assert quality.quality_request_refresh(project_id=project.pk) is False
    assert enqueues["ok"] == []
    state = QualityRefreshState.objects.get(project=project)
    assert state.pending is True
    assert state.requested_at == recent


def test_a_pending_flag_without_a_request_time_is_reclaimed(enqueues, project):
    # given a waiting flag with no request time (set by hand or by an old version)
    QualityRefreshState.objects.create(project=project, pending=True, requested_at=None)
    # when a refresh is requested, then it is enqueued
    assert quality.quality_request_refresh(project_id=project.pk) is True
    assert enqueues["ok"] == [project.pk]


def test_the_refresh_api_says_what_waits_and_queues_a_refresh(
    enqueues, project, admin_user, make_task
):
    from rest_framework.test import APIClient

    # given a computed report and one task changed since
    task = make_task()
    quality.quality_refresh(project_id=project.pk)
    quality.quality_mark_dirty(project_id=project.pk, task_ids=[task.pk])
    client = APIClient()
    client.force_authenticate(admin_user)
    url = f"/api/projects/{project.pk}/quality/refresh/"
    before = client.get(url).json()
    assert (before["pending"], before["changed_tasks"], before["stale"]) == (False, 1, False)
    assert before["computed_at"] is not None
    # when the button's request queues a refresh, then it is enqueued and shown as waiting
    queued = client.post(f"{url}?queue=1").json()
    assert enqueues["ok"] == [project.pk]
    assert (queued["pending"], queued["changed_tasks"]) == (True, 1)
    # and when the queue is down, the answer is a 503 and nothing is left waiting
    QualityRefreshState.objects.filter(project=project).update(pending=False)
    enqueues["fail"] = 1
    refused = client.post(f"{url}?queue=1")
    assert refused.status_code == 503
    assert client.get(url).json()["pending"] is False
