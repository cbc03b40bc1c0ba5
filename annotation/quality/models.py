"""Quality-control tables: gold tasks, adjudications, and the caches behind the dashboards.

Loaded by ``annotation.models`` (they belong to the annotation app and its migrations).
The caches hold sums of per-task contributions (see ``annotation.quality.contributions``):
``TaskQuality`` keeps the facts last applied for each task, ``ProjectQuality`` and
``AnnotatorQuality`` the sums, ``QualityReport`` the figures computed from them. Everything in
them can be rebuilt from labels with ``quality_recompute``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Project, Task, TaskKind


class GoldSource(models.TextChoices):
    MANUAL = "manual", "Marked by an admin"
    PROMOTED = "promoted", "Promoted after unanimous agreement"


class GoldTask(models.Model):
    """A task with a known answer, mixed silently into annotators' queues."""

    task = models.OneToOneField(
        Task, primary_key=True, on_delete=models.CASCADE, related_name="gold"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="gold_tasks")
    # The canonical payload of the expected answer (annotation.labels), e.g. a pairwise
    # {"outcome": "A", ...}; labels are checked with contributions.gold_matches.
    expected = models.JSONField()
    source = models.CharField(max_length=10, choices=GoldSource.choices)
    # The task's overlap before it became gold (gold tasks take every annotator's label).
    original_required_labels = models.PositiveSmallIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)


class Adjudication(models.Model):
    """A reviewer's final decision on a task, with the reason; overrides every policy."""

    task = models.OneToOneField(
        Task, primary_key=True, on_delete=models.CASCADE, related_name="adjudication"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="adjudications")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications"
    )
    payload = models.JSONField(help_text="Canonical payload of the decision (annotation.labels).")
    reason = models.TextField()
    # The labels the reviewer saw (id -> version), so a later edit is visible as such.
    labels_seen = models.JSONField(default=dict)
    # The content flags the reviewer found (annotation.labels.FLAGS), the truth annotators'
    # flags are scored against; null: decided without judging flags (before flags existed).
    flags = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-updated_at"], name="adjudication_recent")]


class QualityDirty(models.Model):
    """A task whose labels changed since its contribution was last applied."""

    task = models.OneToOneField(Task, primary_key=True, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # Set again on every change; the refresh clears only marks older than its own start, so a
    # change that lands while it runs is picked up by the next refresh.
    marked_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["project", "marked_at"], name="qualitydirty_project")]


class TaskQuality(models.Model):
    """The facts of a task as last applied to the sums, and its own agreement."""

    task = models.OneToOneField(
        Task, primary_key=True, on_delete=models.CASCADE, related_name="quality"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    labels = models.PositiveIntegerField(default=0)
    # Pairwise: share of agreeing label pairs; ranking: Kendall's W; None under two labels.
    agreement = models.FloatField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    facts = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            # The reviewer queue: lowest agreement first, among multiply labelled tasks.
            models.Index(
                fields=["project", "agreement", "task"],
                condition=Q(labels__gte=2, is_gold=False),
                name="taskquality_review_queue",
            )
        ]


class ProjectQuality(models.Model):
    """Sums of the task contributions of one project and task kind."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    stats = models.JSONField(default=dict)
    # Cohen's kappa cells per annotator pair ("a-b" -> {"cells": VxV}); pairwise kind only.
    pairs = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "kind"], name="projectquality_unique")
        ]


class AnnotatorQuality(models.Model):
    """Sums of one annotator's contributions in a project, and whether they are paused."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    stats = models.JSONField(default=dict)
    gold_answered = models.PositiveIntegerField(default=0)
    gold_correct = models.PositiveIntegerField(default=0)
    # Gold counts at the last reinstatement: a reinstated annotator is judged on new answers.
    gold_answered_base = models.PositiveIntegerField(default=0)
    gold_correct_base = models.PositiveIntegerField(default=0)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator"], name="annotatorquality_unique")
        ]


class QualityReport(models.Model):
    """The figures the dashboard, API and CLI show, computed after each refresh.

    Its row is also the per-project lock that serialises refreshes.
    """

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="quality_report"
    )
    report = models.JSONField(default=dict)
    computed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(default=0, help_text="How long the last refresh took.")


class QualityRefreshState(models.Model):
    """Whether a refresh job is already queued for a project (so label bursts enqueue one).

    Kept apart from QualityReport: that row is locked while a refresh runs, and a label submit
    must never wait for a refresh.
    """

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    pending = models.BooleanField(default=False)
    requested_at = models.DateTimeField(null=True, blank=True)


class AdjudicationRequest(models.Model):
    """A task sent to the reviewers' queue by hand (from the data explorer), whatever its
    agreement; it stays in the queue, first, until a reviewer decides it."""

    task = models.OneToOneField(
        Task, primary_key=True, on_delete=models.CASCADE, related_name="adjudication_request"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"], name="adjudicationrequest_queue")]
