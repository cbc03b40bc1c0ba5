"""Bulk actions of the data explorer: re-open, set priority, mark gold, send to adjudication.

Each takes the project (already through ``access_project`` with the action's capability,
``BULK_CAPABILITY``) and either explicit task ids (``tasks_bulk_apply``: ids of other projects'
tasks are reported as skipped, never touched) or the explorer's filters
(``tasks_bulk_apply_filtered``: every task the table's filters match, read with the same
``explorer_queryset``, at most ``MAX_BULK_TASKS`` and only if the count the person confirmed is
still the count). The answer says what changed and why each other task did not; each applied
action is one data audit event (``tasks_bulk_changed``) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import F

from annotation.audit import DataAuditAction, data_audit_record
from annotation.explorer.selectors import ExplorerFilters, explorer_queryset
from annotation.models import Label, Project, Task, TaskKind, TaskStatus
from annotation.quality.models import Adjudication, AdjudicationRequest, GoldTask
from annotation.quality.services import GOLD_REQUIRED_LABELS, PROPOSAL_DECISION_FINAL, gold_mark
from annotation.roles import Capability
from config.errors import Conflict, DomainError, ValidationFailed

MAX_BULK_TASKS = 1_000
PRIORITY_LIMIT = 2**31 - 1
BULK_CAPABILITY = {
    "reopen": Capability.MANAGE,
    "set_priority": Capability.MANAGE,
    "mark_gold": Capability.MANAGE,
    "send_to_adjudication": Capability.REVIEW,
}
BULK_ACTIONS = tuple(BULK_CAPABILITY)


def _skip(skipped: list, task_id: int, reason: str) -> None:
    skipped.append({"task_id": task_id, "reason": reason})


def _reopen(project, by, tasks: list[Task], skipped: list, **_) -> int:
    """A done task takes one more label (``required_labels = labels + 1``), so the next
    annotator served it adds a fresh judgement; its labels stay."""
    reopen = []
    for task in tasks:
        if task.status == TaskStatus.OPEN:
            _skip(skipped, task.pk, "already open")
        elif task.label_count >= GOLD_REQUIRED_LABELS:
            _skip(skipped, task.pk, "it already takes every annotator's label")
        else:
            reopen.append(task.pk)
    # One UPDATE, each row under its own lock; label_count <= required_labels holds.
    return Task.objects.filter(pk__in=reopen, status=TaskStatus.DONE).update(
        status=TaskStatus.OPEN, completed_at=None, required_labels=F("label_count") + 1
    )


def _set_priority(project, by, tasks: list[Task], skipped: list, *, priority=None, **_) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationFailed("priority must be a whole number", field="priority")
    if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
        raise ValidationFailed(
            f"priority must be from {-PRIORITY_LIMIT} to {PRIORITY_LIMIT}", field="priority"
        )
    return Task.objects.filter(pk__in=[t.pk for t in tasks]).update(priority=priority)


def _client_payload(kind: str, canonical: dict) -> dict:
    """A canonical payload (annotation.labels) as a client would send it again."""
    if kind == TaskKind.PAIRWISE:
        return {"choice": canonical["outcome"], "strength": canonical.get("strength")}
    if kind == TaskKind.RANKING:
        return {"ranking": canonical["ranking"]}
    return {"scores": canonical["scores"]}


def _answer_key(kind: str, canonical: dict):
    if kind == TaskKind.PAIRWISE:
        return canonical.get("outcome")
    if kind == TaskKind.RANKING:
        return repr(canonical.get("ranking"))
    return repr(sorted((canonical.get("scores") or {}).items()))


def agreed_answer(task: Task) -> dict | None:
    """The answer a task is known to have: its adjudication, else its labels when they all
    agree (pairwise: the outcome; ranking: the order; rubric: every score); else None."""
    decision = Adjudication.objects.filter(task=task).values_list("payload", flat=True).first()
    if decision is not None:
        return _client_payload(task.kind, decision)
    payloads = list(
        Label.objects.filter(task=task).order_by("id").values_list("payload", flat=True)
    )
    if not payloads or len({_answer_key(task.kind, p) for p in payloads}) != 1:
        return None
    return _client_payload(task.kind, payloads[0])


def _mark_gold(project, by, tasks: list[Task], skipped: list, **_) -> int:
    gold = set(GoldTask.objects.filter(task__in=tasks).values_list("task_id", flat=True))
    marked = 0
    for task in tasks:
        if task.pk in gold:
            _skip(skipped, task.pk, "already gold")
        elif task.kind == TaskKind.CORRECTION:
            _skip(skipped, task.pk, "correction tasks have no single right answer")
        elif (answer := agreed_answer(task)) is None:
            _skip(skipped, task.pk, "no agreed answer: its labels disagree or it has none; "
                                    "adjudicate it first")  # fmt: skip
        else:
            try:
                gold_mark(task=task, payload=answer, by=by)
            except DomainError as exc:
                _skip(skipped, task.pk, exc.message)
            else:
                marked += 1
    return marked


def _send_to_adjudication(project, by, tasks: list[Task], skipped: list, **_) -> int:
    ids = [t.pk for t in tasks]
    decided = set(Adjudication.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    waiting = set(
        AdjudicationRequest.objects.filter(task_id__in=ids).values_list("task_id", flat=True)
    )
    new = []
    for task in tasks:
        if task.pk in decided:
            _skip(skipped, task.pk, "already adjudicated")
        elif task.pk in waiting:
            _skip(skipped, task.pk, "already waiting for adjudication")
        elif task.label_count == 0:
            _skip(skipped, task.pk, "no labels to adjudicate yet")
        elif task.kind == TaskKind.CONFIRM:
            _skip(skipped, task.pk, PROPOSAL_DECISION_FINAL)
        else:
            new.append(AdjudicationRequest(task=task, project=project, requested_by=by))
    AdjudicationRequest.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


_ACTIONS: dict[str, Callable[..., int]] = {
    "reopen": _reopen,
    "set_priority": _set_priority,
    "mark_gold": _mark_gold,
    "send_to_adjudication": _send_to_adjudication,
}


def _apply(*, project: Project, by, action: str, wanted: list[int], priority, audit: dict) -> dict:
    tasks = list(
        Task.objects.filter(project=project, pk__in=wanted).select_related("project").order_by("id")
    )
    found = {t.pk for t in tasks}
    skipped: list[dict] = []
    for task_id in wanted:
        if task_id not in found:
            _skip(skipped, task_id, "no such task in this project")
    changed = _ACTIONS[action](project, by, tasks, skipped, priority=priority)
    details = {"action": action, **audit, "tasks": len(wanted), "changed": changed}
    details["skipped"] = len(skipped)
    if action == "set_priority":
        details["priority"] = priority
    data_audit_record(
        action=DataAuditAction.TASKS_BULK_CHANGED,
        subject=f"project:{project.pk}:{action}",
        actor=by,
        project=project,
        details=details,
    )
    return {"action": action, "changed": changed, "skipped": skipped}


def _check_action(action: str) -> None:
    if action not in _ACTIONS:
        raise ValidationFailed(f"action must be one of {list(BULK_ACTIONS)}", field="action")


@transaction.atomic
def tasks_bulk_apply(
    *, project: Project, by, action: str, task_ids: list[int], priority: int | None = None
) -> dict:
    """Apply ``action`` to the listed tasks of ``project``; all in one transaction.

    Returns ``{"action", "changed", "skipped": [{"task_id", "reason"}]}``.
    """
    _check_action(action)
    if (
        not isinstance(task_ids, list)
        or not task_ids
        or any(isinstance(i, bool) or not isinstance(i, int) or not 0 < i < 2**63 for i in task_ids)
    ):
        raise ValidationFailed("task_ids must be a non-empty list of task ids", field="task_ids")
    if len(task_ids) > MAX_BULK_TASKS:
        raise ValidationFailed(
            f"at most {MAX_BULK_TASKS} tasks at a time ({len(task_ids)} sent)", field="task_ids"
        )
    wanted = list(dict.fromkeys(task_ids))
    return _apply(
        project=project,
        by=by,
        action=action,
        wanted=wanted,
        priority=priority,
        audit={"scope": "selected"},
    )


@transaction.atomic
def tasks_bulk_apply_filtered(
    *,
    project: Project,
    by,
    action: str,
    filters: ExplorerFilters,
    expected_count: int,
    priority: int | None = None,
) -> dict:
    """Apply ``action`` to every task of ``project`` that ``filters`` match (the explorer's
    own ``explorer_queryset``), in one transaction.

    ``expected_count`` is the number the person confirmed: if the filtered set has grown or
    shrunk since, nothing is applied (409 ``count_changed``, with the new ``count``). Above
    ``MAX_BULK_TASKS`` matching tasks nothing is applied either (400 naming ``filters``).
    """
    _check_action(action)
    if isinstance(expected_count, bool) or not isinstance(expected_count, int):
        raise ValidationFailed(
            "expected_count must be the number of tasks you confirmed", field="expected_count"
        )
    wanted = list(
        explorer_queryset(project, filters)
        .order_by("id")
        .values_list("id", flat=True)[: MAX_BULK_TASKS + 1]
    )
    if len(wanted) > MAX_BULK_TASKS:
        raise ValidationFailed(
            f"these filters match more than {MAX_BULK_TASKS:,} tasks; a bulk action takes at "
            f"most {MAX_BULK_TASKS:,} at a time: narrow the filters",
            field="filters",
        )
    if not wanted:
        raise ValidationFailed("no task matches these filters", field="filters")
    if len(wanted) != expected_count:
        raise Conflict(
            f"the filters now match {len(wanted)} tasks, not the {expected_count} you "
            "confirmed; nothing was changed: confirm again",
            code="count_changed",
            count=len(wanted),
        )
    return _apply(
        project=project,
        by=by,
        action=action,
        wanted=wanted,
        priority=priority,
        audit={"scope": "filtered", "filters": filters.as_params()},
    )
