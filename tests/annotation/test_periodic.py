"""Retention runs by itself: each worker enqueues due periodic jobs, once however many workers
there are, and the job applies every project's retention settings."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from annotation import periodic, services
from annotation.audit import DataAuditEvent
from annotation.models import Prompt
from annotation.periodic import PeriodicJob, periodic_jobs_enqueue_due
from annotation.tasks import retention_apply_job

REPO = Path(__file__).resolve().parents[2]
RETENTION = "annotation.tasks.retention_apply_job"


def _retention_results():
    return DBTaskResult.objects.filter(task_path=RETENTION)


def _expired_prompt(project, make_task):
    """A project keeping raw texts 90 days, with one unused prompt 100 days old."""
    task = make_task()
    Prompt.objects.filter(pk=task.prompt_id).update(created_at=timezone.now() - timedelta(days=100))
    services.project_settings_update(
        project=project, changes={"privacy": {"raw_text_retention_days": 90}}
    )
    return task.prompt_id


@pytest.mark.django_db
def test_a_due_job_is_enqueued_once_per_period(django_capture_on_commit_callbacks, settings):
    settings.TANDEM_RETENTION_EVERY_SECONDS = 3600
    now = timezone.now()
    # given no periodic job has run yet: the first look enqueues retention at once
    with django_capture_on_commit_callbacks(execute=True):
        assert periodic_jobs_enqueue_due(now=now) == ["apply_retention"]
    queued = _retention_results().get()
    assert (queued.queue_name, queued.status) == ("default", "READY")
    job = PeriodicJob.objects.get(name="apply_retention")
    assert job.next_run_at == now + timedelta(hours=1)
    assert job.last_task_result_id == str(queued.id)
    # when workers look again within the hour, then nothing more is enqueued
    with django_capture_on_commit_callbacks(execute=True):
        assert periodic_jobs_enqueue_due(now=now + timedelta(minutes=59)) == []
    assert _retention_results().count() == 1
    # and an hour on, the next run is
    with django_capture_on_commit_callbacks(execute=True):
        assert periodic_jobs_enqueue_due(now=now + timedelta(hours=1)) == ["apply_retention"]
    assert _retention_results().count() == 2


@pytest.mark.django_db
def test_the_job_applies_retention_and_a_second_run_changes_nothing(project, make_task):
    expired = _expired_prompt(project, make_task)
    result = retention_apply_job.call()
    assert result[str(project.pk)]["prompts_deleted"] == 1
    assert not Prompt.objects.filter(pk=expired).exists()
    assert retention_apply_job.call()[str(project.pk)] == {
        "rationales_removed": 0, "prompts_deleted": 0, "responses_deleted": 0,
    }  # fmt: skip
    assert DataAuditEvent.objects.filter(action="retention_applied").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_worker_looking_while_another_enqueues_passes_the_job_over(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite runs one writer at a time)")
    # given one worker that has locked the due job and not yet committed
    job, period = periodic.PERIODIC_JOBS["apply_retention"]
    locked, looked = threading.Event(), threading.Event()
    first = {}

    def held_period():
        if threading.current_thread().name == "first-worker":
            locked.set()
            looked.wait(timeout=30)
        return period()

    monkeypatch.setitem(periodic.PERIODIC_JOBS, "apply_retention", (job, held_period))

    def first_worker():
        try:
            first["found"] = periodic_jobs_enqueue_due()
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_worker, name="first-worker")
    thread.start()
    assert locked.wait(timeout=30)
    # when a second worker looks for due jobs meanwhile
    try:
        second = periodic_jobs_enqueue_due()
    finally:
        looked.set()
        thread.join(timeout=30)
    # then it passes the job over, and the first enqueues it: once in all
    assert second == []
    assert first["found"] == ["apply_retention"]
    assert _retention_results().count() == 1
    assert PeriodicJob.objects.get(name="apply_retention").next_run_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_worker_applies_retention_by_itself(project, make_task, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the worker process shares the test database only on PostgreSQL")
    expired = _expired_prompt(project, make_task)
    # when the platform's worker runs (looking for due jobs every 0.2 s)
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "0",
           "TANDEM_PERIODIC_TICK_SECONDS": "0.2", "TANDEM_LOG_LEVEL": "WARNING"}  # fmt: skip
    log = tmp_path / "worker.log"
    command = [sys.executable, "manage.py", "worker", "--queue-name", "default", "--no-reload",
               "--interval", "0.2", "--no-startup-delay", "--verbosity", "0"]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while Prompt.objects.filter(pk=expired).exists():
                assert worker.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        finally:
            worker.kill()
            worker.wait(timeout=30)
    # then it enqueued retention itself and ran it: the expired prompt is gone, and audited
    assert _retention_results().get().status == "SUCCESSFUL"
    assert DataAuditEvent.objects.filter(action="retention_applied", project=project).count() == 1
