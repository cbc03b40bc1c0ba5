"""A reviewer's final decision on a disputed task."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.labels import clean_flags
from annotation.models import Task, TaskKind
from annotation.quality.models import Adjudication, GoldTask
from annotation.quality.services.gold import task_answer_canonical
from annotation.services.project_settings import project_allowed_flags
from config.errors import Conflict, ValidationFailed

MAX_REASON_CHARS = 5_000
# A confirm task's decision (a person keeping, editing or rejecting a model's proposal) can be
# neither edited nor undone: there is nothing for a reviewer to overrule.
PROPOSAL_DECISION_FINAL = "a proposal's decision is final"


@transaction.atomic
def adjudication_decide(
    *, task: Task, reviewer, payload: dict, reason: str, flags: list | None = None
) -> Adjudication:
    """Record a reviewer's final decision on ``task``; its labels can no longer be edited.

    ``payload``: the answer as an annotator sends it, checked by the same rule as labels; for
    a correction task, the final text (``corrected_text``): one annotator's rewrite, the
    reviewer's own, or the original itself when it needs no correction (``unchanged``).

    ``flags``: the content flags the reviewer found (among the project's allowed ones): they
    count as the truth annotators' flags are scored against, and snapshots apply them as
    flags that reached the minimum. None leaves flags unjudged."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("write the reason for the decision", field="reason")
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationFailed(
            f"reason is longer than {MAX_REASON_CHARS} characters", field="reason"
        )
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    if GoldTask.objects.filter(task=task).exists():
        raise Conflict("gold tasks are decided by their expected answer", code="gold_task")
    if task.kind == TaskKind.CONFIRM:
        raise Conflict(PROPOSAL_DECISION_FINAL, code="decision_final")
    labels = list(task.labels.values_list("id", "version"))
    if not labels:
        raise Conflict("this task has no labels to adjudicate", code="no_labels")
    decision = task_answer_canonical(task, payload)
    if flags is not None:
        flags = clean_flags(flags)
        allowed = project_allowed_flags(task.project)
        refused = [f for f in flags if f not in allowed]
        if refused:
            raise ValidationFailed(
                f"this project does not use the flags {refused}; it allows {list(allowed)}",
                field="flags",
            )
    adjudication, _ = Adjudication.objects.update_or_create(
        task=task,
        defaults={
            "project": task.project,
            "reviewer": reviewer,
            "payload": decision,
            "reason": reason,
            "labels_seen": {str(i): v for i, v in labels},
            "flags": flags,
        },
    )
    task.labels.filter(reviewed_at__isnull=True).update(reviewed_at=timezone.now())
    return adjudication
