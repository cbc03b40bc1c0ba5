"""Keeping the quality caches current: marking changed tasks dirty, refreshing, recomputing.

How the caches stay current (see annotation.quality.contributions for the arithmetic):
1. After a label commits, ``quality_on_label_submitted`` marks its task dirty and, unless a
   refresh is already queued for the project, enqueues one (django-tasks, a worker runs it).
2. ``quality_refresh`` takes the project's report row lock, reads the facts of the dirty
   tasks, subtracts each task's last applied contribution and adds its new one to the project,
   annotator and pair sums, then recomputes the stored report. It never reads other tasks'
   labels, so its cost follows the number of changed tasks, not the project's size.
3. Pages, the API and the CLI read the stored report only.
``quality_recompute`` rebuilds everything from the labels (after a bug fix, or to check).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Label, Lease, LeaseState, Project, Task
from annotation.quality import contributions as qc
from annotation.quality.models import (
    Adjudication,
    AnnotatorQuality,
    GoldTask,
    ProjectQuality,
    QualityDirty,
    QualityRefreshState,
    QualityReport,
    TaskQuality,
)
from annotation.quality.report import quality_report
from annotation.quality.selectors import quality_config, task_facts

logger = logging.getLogger(__name__)
User = get_user_model()

REFRESH_BATCH = 5_000


def quality_mark_dirty(*, project_id: int, task_ids: Iterable[int]) -> None:
    """Record that these tasks' labels, skips or gold status changed."""
    now = timezone.now()
    rows = [QualityDirty(task_id=t, project_id=project_id, marked_at=now) for t in set(task_ids)]
    if rows:
        QualityDirty.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["task"], update_fields=["marked_at"]
        )


def quality_request_refresh(*, project_id: int) -> bool:
    """Enqueue a refresh unless one is already queued; True when one was enqueued.

    Call after the change is committed and marked dirty: the refresh clears the flag before
    it looks for dirty tasks, so a mark made while it runs always gets a refresh of its own.

    The flag can never stall the project's refreshes: a flag older than
    ``TANDEM_QUALITY_REFRESH_STALE_SECONDS`` (its job was lost, or its worker died before it
    started) is taken over by the next request, and a failed enqueue clears the flag it set
    before the error propagates, so the next request tries again. A second job for the same
    project is harmless: refreshes take the report's row lock and apply only dirty tasks.
    """
    from annotation.quality.tasks import quality_refresh_job

    QualityRefreshState.objects.get_or_create(project_id=project_id)
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.TANDEM_QUALITY_REFRESH_STALE_SECONDS)
    claimed = (
        QualityRefreshState.objects.filter(project_id=project_id)
        .filter(Q(pending=False) | Q(requested_at__isnull=True) | Q(requested_at__lt=stale_before))
        .update(pending=True, requested_at=now)
    )
    if not claimed:
        return False
    try:
        quality_refresh_job.enqueue(project_id)
    except Exception:
        # Only this request's flag is cleared: a later request may have claimed it since.
        QualityRefreshState.objects.filter(
            project_id=project_id, pending=True, requested_at=now
        ).update(pending=False)
        raise
    return True


def quality_request_recompute(*, project_id: int) -> None:
    """Enqueue a rebuild of the project's caches from all its labels (``quality_recompute``),
    for a worker: it reads every label of the project, so it never runs in a request. A
    failed enqueue propagates (the caller answers 503; nothing was changed)."""
    from annotation.quality.tasks import quality_recompute_job

    quality_recompute_job.enqueue(project_id)


def quality_on_label_submitted(label: Label) -> None:
    """The ``label_submitted_hooks`` entry (runs after the label's transaction commits)."""
    quality_task_changed(project_id=label.task.project_id, task_ids=[label.task_id])


def quality_task_changed(*, project_id: int, task_ids: Iterable[int]) -> None:
    """For any committed change to tasks' labels or skips: mark them and request a refresh."""
    quality_mark_dirty(project_id=project_id, task_ids=task_ids)
    # The change is committed; a failed enqueue must not turn its response into an error.
    # The task stays dirty and the next refresh (any label, or the CLI) picks it up.
    _request_refresh_quietly(project_id)


def _changed_in_transaction(task: Task) -> None:
    """Mark a task changed by a quality service: the mark commits with the change itself."""
    quality_mark_dirty(project_id=task.project_id, task_ids=[task.pk])
    project_id = task.project_id
    transaction.on_commit(lambda: _request_refresh_quietly(project_id))


def _request_refresh_quietly(project_id: int) -> None:
    # The failed request has cleared its flag (see quality_request_refresh), so the next
    # change, or the CLI, enqueues the refresh this one could not.
    try:
        quality_request_refresh(project_id=project_id)
    except Exception:
        logger.exception("could not enqueue a quality refresh for project %s", project_id)


@dataclass(frozen=True)
class RefreshResult:
    tasks: int  # tasks whose contribution was (re)applied
    seconds: float


def _lock_report(project_id: int) -> QualityReport:
    QualityReport.objects.get_or_create(project_id=project_id)
    return QualityReport.objects.select_for_update().get(project_id=project_id)


def quality_refresh(*, project_id: int, batch_size: int = REFRESH_BATCH) -> RefreshResult:
    """Apply every dirty task of the project, then store a fresh report."""
    start = time.perf_counter()
    QualityRefreshState.objects.filter(project_id=project_id).update(pending=False)
    started = timezone.now()
    applied = 0
    with transaction.atomic():
        report = _lock_report(project_id)
        while True:
            dirty = list(
                QualityDirty.objects.filter(project_id=project_id, marked_at__lte=started)
                .order_by("task_id")
                .values_list("task_id", flat=True)[:batch_size]
            )
            if not dirty:
                break
            _apply(project_id, dirty)
            QualityDirty.objects.filter(task_id__in=dirty, marked_at__lte=started).delete()
            applied += len(dirty)
        _store_report(project_id, report, seconds=time.perf_counter() - start)
    return RefreshResult(applied, time.perf_counter() - start)


def quality_recompute(*, project_id: int, batch_size: int = REFRESH_BATCH) -> RefreshResult:
    """Rebuild every cache of the project from its labels (pauses are kept)."""
    start = time.perf_counter()
    started = timezone.now()
    with transaction.atomic():
        report = _lock_report(project_id)
        TaskQuality.objects.filter(project_id=project_id).delete()
        ProjectQuality.objects.filter(project_id=project_id).delete()
        AnnotatorQuality.objects.filter(project_id=project_id).update(
            stats={}, gold_answered=0, gold_correct=0
        )
        task_ids = set(
            Label.objects.filter(task__project_id=project_id).values_list("task_id", flat=True)
        ) | set(
            Lease.objects.filter(task__project_id=project_id, state=LeaseState.SKIPPED).values_list(
                "task_id", flat=True
            )
        )
        ordered = sorted(task_ids)
        for i in range(0, len(ordered), batch_size):
            _apply(project_id, ordered[i : i + batch_size], fresh=True)
        QualityDirty.objects.filter(project_id=project_id, marked_at__lte=started).delete()
        _store_report(project_id, report, seconds=time.perf_counter() - start)
    return RefreshResult(len(ordered), time.perf_counter() - start)


def _apply(project_id: int, task_ids: list[int], *, fresh: bool = False) -> None:
    """Replace these tasks' contributions in the sums; caller holds the report lock."""
    new_facts = task_facts(task_ids)
    old_facts = (
        {}
        if fresh
        else dict(TaskQuality.objects.filter(task_id__in=task_ids).values_list("task_id", "facts"))
    )
    project_delta: dict[str, dict] = defaultdict(dict)
    pair_delta: dict[str, dict] = defaultdict(dict)
    annotator_delta: dict[int, dict] = defaultdict(dict)
    task_rows = []
    for task_id in task_ids:
        for sign, facts in ((-1, old_facts.get(task_id)), (1, new_facts.get(task_id))):
            if not facts:
                continue
            project_part, annotator_parts, pair_part = qc.task_contribution(facts)
            kind = facts["kind"]
            qc.nested_accumulate(project_delta[kind], project_part, sign)
            if pair_part:
                qc.nested_accumulate(pair_delta[kind], pair_part, sign)
            for a, part in annotator_parts.items():
                qc.nested_accumulate(annotator_delta[a], part, sign)
        facts = new_facts.get(task_id)
        if facts is not None:
            task_rows.append(
                TaskQuality(
                    task_id=task_id,
                    project_id=project_id,
                    kind=facts["kind"],
                    labels=len(facts["labels"]),
                    agreement=qc.task_agreement(facts),
                    is_gold=facts["gold"] is not None,
                    facts=facts,
                )
            )
    _apply_project(project_id, project_delta, pair_delta)
    _apply_annotators(project_id, annotator_delta)
    _upsert(
        TaskQuality,
        task_rows,
        unique=["task_id"],
        update=["kind", "labels", "agreement", "is_gold", "facts", "updated_at"],
    )


_PG_TYPES = {
    "BigAutoField": "bigint",
    "ForeignKey": "bigint",
    "OneToOneField": "bigint",
    "CharField": "text",
    "PositiveIntegerField": "integer",
    "FloatField": "double precision",
    "BooleanField": "boolean",
    "JSONField": "jsonb",
    "DateTimeField": "timestamptz",
}


def _upsert(model, rows: list, *, unique: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE of many rows.

    On PostgreSQL the rows travel as one JSON document read by jsonb_to_recordset: Django's
    bulk_create sends them as arrays, and escaping thousands of JSON values into array
    literals costs more than the rest of a refresh. Elsewhere, bulk_create.
    """
    if not rows:
        return
    now = timezone.now()
    for row in rows:
        if hasattr(row, "updated_at"):
            row.updated_at = now
    if connection.vendor != "postgresql":
        model.objects.bulk_create(
            rows,
            batch_size=1_000,
            update_conflicts=True,
            unique_fields=[u.removesuffix("_id") for u in unique],
            update_fields=update,
        )
        return
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.column == "id")]
    columns = [f.column for f in fields]
    records = []
    for row in rows:
        record = {}
        for f in fields:
            value = getattr(row, f.attname)
            record[f.column] = value.isoformat() if hasattr(value, "isoformat") else value
        records.append(record)
    # Identifiers come from the model's metadata, never from input; the rows are a parameter.
    q = connection.ops.quote_name
    names = ", ".join(q(c) for c in columns)
    definition = ", ".join(f"{q(f.column)} {_PG_TYPES[f.get_internal_type()]}" for f in fields)
    assignments = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in update)
    conflict = ", ".join(q(c) for c in unique)
    sql = " ".join(
        [
            f"INSERT INTO {q(model._meta.db_table)} ({names}) SELECT {names}",
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({definition})",
            f"ON CONFLICT ({conflict}) DO UPDATE SET {assignments}",
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(records)])


def _apply_project(project_id: int, project_delta: dict, pair_delta: dict) -> None:
    for kind in set(project_delta) | set(pair_delta):
        row, _ = ProjectQuality.objects.get_or_create(project_id=project_id, kind=kind)
        row.stats = qc.nested_accumulate(row.stats or {}, project_delta.get(kind))
        row.pairs = qc.nested_accumulate(row.pairs or {}, pair_delta.get(kind))
        row.save(update_fields=["stats", "pairs", "updated_at"])


def _apply_annotators(project_id: int, annotator_delta: dict[int, dict]) -> None:
    if not annotator_delta:
        return
    project = Project.objects.get(pk=project_id)
    config = quality_config(project)
    # Locked: a pause or reinstatement running now must not be overwritten by this refresh.
    existing = {
        row.annotator_id: row
        for row in AnnotatorQuality.objects.select_for_update().filter(
            project_id=project_id, annotator_id__in=list(annotator_delta)
        )
    }
    now = timezone.now()
    rows = []
    for a, delta in annotator_delta.items():
        row = existing.get(a) or AnnotatorQuality(project_id=project_id, annotator_id=a, stats={})
        row.stats = qc.nested_accumulate(row.stats or {}, delta)
        row.gold_answered = int(row.stats.get("gold_answered", 0))
        row.gold_correct = int(row.stats.get("gold_correct", 0))
        row.updated_at = now
        answered = row.gold_answered - row.gold_answered_base
        correct = row.gold_correct - row.gold_correct_base
        if (
            row.paused_at is None
            and answered >= config.gold_min_answers
            and correct < config.gold_threshold * answered
        ):
            row.paused_at = now
            row.pause_reason = (
                f"{correct} of your last {answered} check items matched the expected answer "
                f"(the project asks for {config.gold_threshold:.0%})."
            )
        rows.append(row)
    # One INSERT ... ON CONFLICT for new and known annotators alike.
    _upsert(
        AnnotatorQuality,
        rows,
        unique=["project_id", "annotator_id"],
        update=["stats", "gold_answered", "gold_correct", "paused_at", "pause_reason",
                "updated_at"],
    )  # fmt: skip


def _store_report(project_id: int, report: QualityReport, *, seconds: float) -> None:
    project = Project.objects.get(pk=project_id)
    kinds, pairs = {}, {}
    for kind, stats, kind_pairs in ProjectQuality.objects.filter(project_id=project_id).values_list(
        "kind", "stats", "pairs"
    ):
        kinds[kind] = stats
        pairs.update(kind_pairs or {})
    annotators, paused = {}, {}
    for a, stats, paused_at in AnnotatorQuality.objects.filter(project_id=project_id).values_list(
        "annotator_id", "stats", "paused_at"
    ):
        annotators[a] = stats
        paused[a] = paused_at is not None
    names = dict(User.objects.filter(pk__in=list(annotators)).values_list("pk", "username"))
    # Done tasks are counted by the contributions (a task is done by its last label); the
    # total includes tasks nobody labelled yet, so it is counted (an index-only scan).
    tasks_total = Task.objects.filter(project_id=project_id).count()
    tasks_done = sum(int(stats.get("done", 0)) for stats in kinds.values())
    gold_tasks = GoldTask.objects.filter(project_id=project_id).count()
    adjudicated = Adjudication.objects.filter(project_id=project_id).count()
    # Disputed tasks are counted by the contributions; adjudications only resolve those.
    disputed = sum(int(stats.get("disputed", 0)) for stats in kinds.values())
    data = quality_report(
        kinds=kinds,
        annotators=annotators,
        pairs=pairs,
        config=quality_config(project),
        names=names,
        paused=paused,
        tasks_total=tasks_total - gold_tasks,
        tasks_done=tasks_done,
    )
    data["gold"] = {"tasks": gold_tasks}
    data["review"] = {"pending": max(disputed - adjudicated, 0), "adjudicated": adjudicated}
    data["refresh_seconds"] = round(seconds, 3)
    report.computed_at = timezone.now()
    data["computed_at"] = report.computed_at.isoformat()
    report.report = data
    report.seconds = seconds
    report.save(update_fields=["report", "computed_at", "seconds"])
