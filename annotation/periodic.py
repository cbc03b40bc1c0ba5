"""Periodic jobs: the platform's workers enqueue recurring work themselves (no cron needed).

django-tasks has no scheduler, so every worker started with ``manage.py worker`` runs a small
loop in a thread of its own (``periodic_scheduler_start``): every ``TANDEM_PERIODIC_TICK_SECONDS``
it calls ``periodic_jobs_enqueue_due``, which, for each job in ``PERIODIC_JOBS`` whose
``next_run_at`` has come, locks the job's ``PeriodicJob`` row (``FOR UPDATE SKIP LOCKED``),
moves ``next_run_at`` one period on and enqueues the job after commit. Two workers (or ten)
therefore enqueue a due job once: the second finds the row locked, or no longer due. The job
runs like any other on its queue, and is idempotent (retention run twice changes nothing the
second time), so a run enqueued twice by hand does no harm either.

If a worker dies between the commit and the enqueue, that period's run is skipped; the next
period's happens as usual (``manage.py apply_retention`` runs it at once by hand).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, models, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


class PeriodicJob(models.Model):
    """When a recurring job is next due, and what was last enqueued for it."""

    name = models.CharField(max_length=64, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)
    last_task_result_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        app_label = "annotation"


def _retention_job():
    from annotation.tasks import retention_apply_job

    return retention_apply_job


# name -> (the job's task, its period). Read the period at call time: tests override settings.
PERIODIC_JOBS = {
    "apply_retention": (
        _retention_job,
        lambda: timedelta(seconds=settings.TANDEM_RETENTION_EVERY_SECONDS),
    ),
}


def periodic_jobs_enqueue_due(*, now=None) -> list[str]:
    """Enqueue every periodic job that is due (each once, whatever the number of workers
    calling this at the same moment); returns the names enqueued."""
    now = now or timezone.now()
    enqueued = []
    for name, (job, period) in PERIODIC_JOBS.items():
        PeriodicJob.objects.get_or_create(name=name, defaults={"next_run_at": now})
        with transaction.atomic():
            due = (
                PeriodicJob.objects.select_for_update(skip_locked=True)
                .filter(name=name, next_run_at__lte=now)
                .first()
            )
            if due is None:
                continue
            due.next_run_at = now + period()
            due.last_enqueued_at = now
            due.save(update_fields=["next_run_at", "last_enqueued_at"])
            transaction.on_commit(lambda name=name, job=job: _enqueue(name, job()))
        enqueued.append(name)
    return enqueued


def _enqueue(name: str, job) -> None:
    result = job.enqueue()
    PeriodicJob.objects.filter(name=name).update(last_task_result_id=str(result.id))


def periodic_scheduler_start(*, tick_seconds: float | None = None) -> threading.Thread:
    """Start the worker's scheduler loop in a daemon thread (it ends with the process)."""
    tick = settings.TANDEM_PERIODIC_TICK_SECONDS if tick_seconds is None else tick_seconds

    def loop():
        while True:
            try:
                close_old_connections()
                for name in periodic_jobs_enqueue_due():
                    logger.info("periodic job %s enqueued", name)
            except Exception:  # a database hiccup must not end the loop for good
                logger.exception("periodic jobs: enqueueing failed; trying again next tick")
            finally:
                close_old_connections()
            time.sleep(tick)

    thread = threading.Thread(target=loop, name="tandem-periodic", daemon=True)
    thread.start()
    return thread
