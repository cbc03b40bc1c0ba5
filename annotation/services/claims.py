"""Claiming tasks: leases, heartbeats and skips (see ``annotation.services`` for the
concurrency model)."""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Label, Lease, LeaseState, Project, Task, TaskStatus
from annotation.selectors import task_items
from annotation.services import hooks
from annotation.services.hooks import _after_commit_task_changed
from config.errors import Conflict, ValidationFailed


def _shown_order(task_id: int, annotator_id: int, item_ids: list[int]) -> list[int]:
    """Randomised per annotator, but stable: a re-lease shows the same sides again."""
    order = list(item_ids)
    random.Random(f"{task_id}:{annotator_id}").shuffle(order)
    return order


def _lock_next_candidate(project: Project, annotator, exclude: list[int], now) -> Task | None:
    """The best open task ``annotator`` may take, locked, or ``None``.

    On PostgreSQL one statement finds and locks it: ``FOR UPDATE OF task SKIP LOCKED`` passes
    busy rows over and locks only the task row, never its project. The partial index
    ``task_open_queue`` serves the ``ORDER BY``, so done tasks are never scanned. The lease
    counts in the ``WHERE`` are from the statement's snapshot, so the caller checks them again
    under the lock; the task is then read with a fresh statement too.

    Written in SQL because it runs on every claim and building the same statement with the
    ORM (three correlated subqueries) cost ~2.5 ms of CPU per claim, more than all the rest
    of the claim together. ``tests/annotation/test_claims.py`` pins what it must select.
    """
    tasks, leases, labels = Task._meta.db_table, Lease._meta.db_table, Label._meta.db_table
    # Gold tasks (annotation.quality) reach annotators only through the gold preemptor.
    gold = Task._meta.get_field("gold").related_model._meta.db_table
    params: list = [project.pk, TaskStatus.OPEN]
    excluded = ""
    if exclude:
        excluded = f"AND t.id NOT IN ({', '.join(['%s'] * len(exclude))})"
        params += exclude
    live_since = connection.ops.adapt_datetimefield_value(now)
    params += [
        annotator.pk, LeaseState.SUBMITTED, LeaseState.SKIPPED,  # closed by this annotator
        annotator.pk,  # labelled by this annotator
        LeaseState.ACTIVE, live_since,  # live leases
    ]  # fmt: skip
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = "FOR UPDATE OF t SKIP LOCKED"
    sql = f"""
        SELECT t.id FROM {tasks} t
        WHERE t.project_id = %s AND t.status = %s {excluded}
          AND NOT EXISTS (SELECT 1 FROM {gold} g WHERE g.task_id = t.id)
          AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.task_id = t.id
                          AND l.annotator_id = %s AND l.state IN (%s, %s))
          AND NOT EXISTS (SELECT 1 FROM {labels} b WHERE b.task_id = t.id AND b.annotator_id = %s)
          AND t.label_count + (SELECT count(*) FROM {leases} a WHERE a.task_id = t.id
                               AND a.state = %s AND a.expires_at > %s) < t.required_labels
        ORDER BY t.priority DESC, t.id
        LIMIT 1 {lock}
    """  # noqa: S608  (table names from the models, values as parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return Task.objects.select_related("prompt").get(pk=row[0])


def _leases_under_lock(task: Task, annotator, now) -> tuple[int, Lease | None]:
    """Other annotators' live leases on ``task``, and ``annotator``'s own lease if any.

    A fresh statement, run while holding the task's row lock: it sees every lease committed
    before the lock was taken, which the statement that found the task may have missed.
    """
    rows = Lease.objects.filter(task=task).filter(
        Q(annotator=annotator) | Q(state=LeaseState.ACTIVE, expires_at__gt=now)
    )
    others, mine = 0, None
    for lease in rows:
        if lease.annotator_id == annotator.pk:
            mine = lease
        else:
            others += 1
    return others, mine


def _room_for(task: Task, annotator, now) -> bool:
    """Whether ``task`` (as read under its row lock) can take one more of ``annotator``'s."""
    if task.status != TaskStatus.OPEN:
        return False
    others, _ = _leases_under_lock(task, annotator, now)
    return task.label_count + others < task.required_labels


def _grant_lease(task: Task, annotator, now, mine: Lease | None) -> Lease:
    expires = now + timedelta(seconds=task.project.lease_seconds)
    if mine is None:
        # Under the task's row lock nobody else can create this (task, annotator) lease.
        item_ids = [item.response_id for item in task_items(task)]
        return Lease.objects.create(
            task=task,
            annotator=annotator,
            heartbeat_at=now,
            expires_at=expires,
            shown_order=_shown_order(task.pk, annotator.pk, item_ids),
        )
    mine.task = task
    mine.state = LeaseState.ACTIVE
    mine.heartbeat_at = now
    mine.expires_at = expires
    mine.closed_at = None
    mine.created_at = now
    mine.save(update_fields=["state", "heartbeat_at", "expires_at", "closed_at", "created_at"])
    return mine


def task_claim_next(*, project: Project, annotator, exclude_task_ids=()) -> Lease | None:
    """Hand ``annotator`` a task they have not labelled, honouring overlap ``k`` exactly.

    Returns the lease (already held ones first), or ``None`` when nothing is left.
    ``exclude_task_ids`` lets the browser preload the next task while showing the current.
    """
    for guard in hooks.claim_guards:
        guard(project, annotator)
    exclude = [int(t) for t in exclude_task_ids]
    now = timezone.now()
    # One statement for both questions: a live lease to hand back, and how many are held.
    live = list(
        Lease.objects.select_related("task", "task__prompt")
        .filter(
            annotator=annotator,
            task__project=project,
            state=LeaseState.ACTIVE,
            expires_at__gt=now,
        )
        .order_by("created_at", "id")
    )
    for lease in live:
        if lease.task.status == TaskStatus.OPEN and lease.task_id not in exclude:
            lease.task.project = project
            return lease
    if len(live) >= settings.TANDEM_MAX_ACTIVE_LEASES_PER_ANNOTATOR:
        raise Conflict(
            "finish or skip the tasks you hold before taking another", code="too_many_leases"
        )
    tried: list[int] = []
    for _attempt in range(8):
        with transaction.atomic():
            task = None
            for preempt in hooks.claim_preemptors:
                task_id = preempt(project, annotator, exclude + tried)
                if task_id:
                    task = (
                        Task.objects.select_for_update(of=("self",))
                        .select_related("prompt")
                        .get(pk=task_id)
                    )
                    break
            if task is None:
                task = _lock_next_candidate(project, annotator, exclude + tried, now)
                if task is None:
                    return None
            task.project = project
            others, mine = _leases_under_lock(task, annotator, now)
            closed = mine is not None and mine.state in (LeaseState.SUBMITTED, LeaseState.SKIPPED)
            if (
                closed
                or task.status != TaskStatus.OPEN
                or task.label_count + others >= task.required_labels
            ):
                tried.append(task.pk)
                continue
            return _grant_lease(task, annotator, now, mine)
    return None


def _lease_of(task: Task, annotator) -> Lease:
    lease = Lease.objects.filter(task=task, annotator=annotator).first()
    if lease is None:
        raise Conflict("you hold no lease on this task", code="no_lease")
    return lease


@transaction.atomic
def lease_heartbeat(*, task: Task, annotator) -> Lease:
    """Extend the lease; an expired one is renewed only if the task still has room."""
    now = timezone.now()
    task = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task.pk)
    lease = _lease_of(task, annotator)
    if lease.state != LeaseState.ACTIVE:
        raise Conflict(f"the lease is {lease.state}", code="lease_closed")
    if lease.expires_at <= now and not _room_for(task, annotator, now):
        raise Conflict("the lease expired and the task went to others", code="lease_lost")
    lease.heartbeat_at = now
    lease.expires_at = now + timedelta(seconds=task.project.lease_seconds)
    lease.save(update_fields=["heartbeat_at", "expires_at"])
    return lease


@transaction.atomic
def task_skip(*, task: Task, annotator, reason: str = "") -> Lease:
    """Record a skip: the task is not offered to this annotator again."""
    if len(reason) > 500:
        raise ValidationFailed("reason must be under 500 characters", field="reason")
    task = Task.objects.select_for_update().get(pk=task.pk)
    lease = _lease_of(task, annotator)
    if lease.state == LeaseState.SUBMITTED:
        raise Conflict("you already labelled this task", code="already_labelled")
    lease.state = LeaseState.SKIPPED
    lease.skip_reason = reason
    lease.closed_at = timezone.now()
    lease.save(update_fields=["state", "skip_reason", "closed_at"])
    _after_commit_task_changed(task.project_id, task.pk)
    return lease
