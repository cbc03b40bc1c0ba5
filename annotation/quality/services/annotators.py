"""Pausing annotators whose check items fall below the threshold, and reinstating them."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from annotation.quality.models import AnnotatorQuality
from config.errors import Conflict, Forbidden


class AnnotatorPaused(Forbidden):
    code = "paused"


def quality_claim_guard(project: Project, annotator) -> None:
    """``claim_guards`` entry: a paused annotator gets no task, and is told why."""
    row = (
        AnnotatorQuality.objects.filter(project=project, annotator=annotator)
        .exclude(paused_at__isnull=True)
        .values("pause_reason")
        .first()
    )
    if row is not None:
        raise AnnotatorPaused(
            "You are paused from this project's queue: "
            + (row["pause_reason"] or "your check items fell below the threshold.")
            + " A project admin can reinstate you after a review.",
        )


@transaction.atomic
def annotator_pause(*, project: Project, annotator, reason: str) -> AnnotatorQuality:
    """Take ``annotator`` off the project's queue (``quality_claim_guard`` refuses their
    claims, with ``reason``) until an admin reinstates them."""
    row, _ = AnnotatorQuality.objects.select_for_update().get_or_create(
        project=project, annotator=annotator
    )
    row.paused_at = timezone.now()
    row.pause_reason = reason[:300]
    row.save(update_fields=["paused_at", "pause_reason", "updated_at"])
    return row


@transaction.atomic
def annotator_reinstate(*, project: Project, annotator) -> AnnotatorQuality:
    """Lift a pause; from now on the annotator is judged only on new gold answers."""
    row = (
        AnnotatorQuality.objects.select_for_update()
        .filter(project=project, annotator=annotator)
        .first()
    )
    if row is None or row.paused_at is None:
        raise Conflict("this annotator is not paused", code="not_paused")
    row.paused_at = None
    row.pause_reason = ""
    row.gold_answered_base = row.gold_answered
    row.gold_correct_base = row.gold_correct
    row.save(
        update_fields=[
            "paused_at",
            "pause_reason",
            "gold_answered_base",
            "gold_correct_base",
            "updated_at",
        ]
    )
    return row
