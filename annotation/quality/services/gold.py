"""Gold tasks: items with a known answer, mixed into the queue to check annotators."""

from __future__ import annotations

import random

from django.db import transaction
from django.utils import timezone

from annotation.labels import canonical_payload
from annotation.models import Lease, Project, Task, TaskKind, TaskStatus
from annotation.quality.models import GoldSource, GoldTask, TaskQuality
from annotation.quality.selectors import quality_config
from annotation.quality.services.refresh import _changed_in_transaction
from config.errors import Conflict, ValidationFailed

# Gold tasks take a label from every annotator who is served them; the overlap column is a
# PositiveSmallIntegerField, so "everyone" is its largest value.
GOLD_REQUIRED_LABELS = 32_767


def task_answer_canonical(task: Task, payload: dict) -> dict:
    """An answer to ``task`` given as a client sends it (a gold answer, an adjudication), in
    canonical form: the same rule as labels (``annotation.labels.canonical_payload``)."""
    items = list(
        task.items.select_related("response")
        .order_by("position")
        .values_list("response_id", "response__text")
    )
    return canonical_payload(
        task.kind,
        payload,
        item_ids=[i for i, _ in items],
        shown_order=None,
        rubric=task.project.rubric,
        texts=dict(items),
    )


def _expected_payload(task: Task, payload: dict) -> dict:
    if task.kind == TaskKind.CORRECTION:
        raise ValidationFailed("correction tasks have no single right answer to check against")
    return task_answer_canonical(task, payload)


@transaction.atomic
def gold_mark(*, task: Task, payload: dict, by, source: str = GoldSource.MANUAL) -> GoldTask:
    """Make ``task`` a gold task whose expected answer is ``payload`` (as a client sends it).

    The task then takes a label from every annotator it is served to (at the project's gold
    rate); existing labels stay, but only labels given from now on count as gold answers.
    """
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    expected = _expected_payload(task, payload)
    gold = GoldTask.objects.filter(task=task).first()
    if gold is None:
        gold = GoldTask.objects.create(
            task=task,
            project=task.project,
            expected=expected,
            source=source,
            original_required_labels=task.required_labels,
            created_by=by,
        )
    else:
        gold.expected = expected
        gold.save(update_fields=["expected"])
    task.required_labels = GOLD_REQUIRED_LABELS
    task.status = TaskStatus.OPEN
    task.completed_at = None
    task.save(update_fields=["required_labels", "status", "completed_at"])
    _changed_in_transaction(task)
    return gold


@transaction.atomic
def gold_unmark(*, task: Task) -> None:
    """Return a gold task to the ordinary pool with its former overlap."""
    task = Task.objects.select_for_update().get(pk=task.pk)
    gold = GoldTask.objects.filter(task=task).first()
    if gold is None:
        raise Conflict("this task is not a gold task", code="not_gold")
    task.required_labels = max(gold.original_required_labels, task.label_count, 1)
    if task.label_count >= task.required_labels:
        task.status = TaskStatus.DONE
        task.completed_at = task.completed_at or timezone.now()
    task.save(update_fields=["required_labels", "status", "completed_at"])
    gold.delete()
    _changed_in_transaction(task)


def gold_promote_unanimous(*, project: Project, by, min_labels: int = 3, limit: int = 100) -> int:
    """Promote up to ``limit`` tasks whose ``min_labels``+ labels all agree to gold."""
    if min_labels < 2:
        raise ValidationFailed("promotion needs at least two agreeing labels", field="min_labels")
    candidates = (
        TaskQuality.objects.filter(
            project=project,
            labels__gte=min_labels,
            is_gold=False,
            agreement__gte=1.0,
            kind__in=[TaskKind.PAIRWISE, TaskKind.RANKING],
        )
        .filter(task__adjudication__isnull=True)
        .order_by("-labels", "task_id")
        .values_list("task_id", flat=True)[:limit]
    )
    promoted = 0
    for task in Task.objects.filter(pk__in=list(candidates)).select_related("project"):
        payload = task.labels.order_by("id").values_list("payload", flat=True).first()
        if task.kind == TaskKind.PAIRWISE:
            client = {"choice": payload["outcome"], "strength": payload.get("strength")}
        else:
            client = {"ranking": payload["ranking"]}
        gold_mark(task=task, payload=client, by=by, source=GoldSource.PROMOTED)
        promoted += 1
    return promoted


def gold_pick_for(annotator, project: Project, *, exclude=(), rng=None) -> int | None:
    """A gold task to serve ``annotator`` now, drawn at the project's gold rate, or None.

    Called by ``task_claim_next`` (as a claim preemptor) inside its transaction, before the
    ordinary queue. Only gold tasks the annotator has not seen (no lease, no label) qualify.
    """
    rng = rng or random
    config = quality_config(project)
    if config.gold_rate <= 0 or rng.random() >= config.gold_rate:
        return None
    seen = Lease.objects.filter(annotator=annotator, task__project=project).values("task_id")
    candidates = list(
        GoldTask.objects.filter(project=project, task__status=TaskStatus.OPEN)
        .exclude(task_id__in=seen)
        .exclude(task_id__in=list(exclude))
        .values_list("task_id", flat=True)
    )
    return rng.choice(candidates) if candidates else None


def gold_preemptor(project: Project, annotator, exclude_ids) -> int | None:
    """``claim_preemptors`` signature: (project, annotator, exclude_ids) -> task id."""
    return gold_pick_for(annotator, project, exclude=exclude_ids)
