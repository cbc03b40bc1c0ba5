"""Model versions, their artifacts and aliases, the append-only audit log, generation jobs.

Invariants the schema enforces (not only the code):
- a version number is unique per (project, name); a version is never its own parent;
- an alias (``champion``) names exactly one version per project;
- an artifact path appears once per version, with its sha256;
- audit events are never updated or deleted: the model and its QuerySet refuse, and on
  PostgreSQL a trigger refuses UPDATE and DELETE whatever the client (migration 0002).
  Every foreign key into the log PROTECTs, so deleting a version, project or person that the
  log mentions fails instead of rewriting history (deactivate people instead).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class VersionKind(models.TextChoices):
    POLICY = "policy", "Policy"
    REWARD = "reward", "Reward model"


class VersionState(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    ARCHIVED = "archived", "Archived"


# The lifecycle. Anything not listed (skipping review, reviving a rejected version) is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    VersionState.CANDIDATE: frozenset({VersionState.IN_REVIEW}),
    VersionState.IN_REVIEW: frozenset({VersionState.APPROVED, VersionState.REJECTED}),
    VersionState.APPROVED: frozenset({VersionState.ARCHIVED}),
    VersionState.REJECTED: frozenset({VersionState.ARCHIVED}),
    VersionState.ARCHIVED: frozenset(),
}


class ModelVersion(models.Model):
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.PROTECT, related_name="model_versions"
    )
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=VersionKind.choices)
    state = models.CharField(
        max_length=10, choices=VersionState.choices, default=VersionState.CANDIDATE
    )
    architecture = models.CharField(max_length=100, help_text="e.g. LlamaForCausalLM")
    backbone = models.CharField(max_length=50, help_text="config.json model_type, e.g. llama")
    base_model = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="derived_versions",
        help_text="The base model at the root of this version's lineage.",
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The version this one was trained from.",
    )
    source = models.CharField(max_length=300, help_text="embedded:<name>, folder or training run")
    artifact_dir = models.CharField(max_length=1000)
    is_adapter = models.BooleanField(
        default=False, help_text="A LoRA adapter: merge onto base_model's weights to use it."
    )
    # Where the weights came from (rlhf, the layer below, knows nothing of versions).
    training_run = models.ForeignKey(
        "rlhf.TrainingRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The training run whose result this version is.",
    )
    dataset_snapshot = models.ForeignKey(
        "rlhf.DatasetSnapshot",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The dataset snapshot it was trained on.",
    )
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who launched the training run; they may not approve its result.",
    )
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    config = models.JSONField(default=dict, blank=True, help_text="Training config (asdict).")
    code_version = models.CharField(max_length=64, blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    chat_template_sha256 = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    data_card = models.JSONField(
        default=dict, blank=True, help_text="Summary of the dataset snapshot it was trained on."
    )
    model_card = models.TextField(blank=True, help_text="Generated Markdown.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="modelversion_unique_number"
            ),
            models.CheckConstraint(
                condition=Q(state__in=VersionState.values), name="modelversion_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=VersionKind.values), name="modelversion_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(parent=F("id")), name="modelversion_not_own_parent"
            ),
        ]

    def __str__(self):
        return self.label

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_retired(self) -> bool:
        """Rejected or archived: no run may start from it any more."""
        return self.state in (VersionState.REJECTED, VersionState.ARCHIVED)

    @property
    def response_model_name(self) -> str:
        """What ``annotation.Response.model_name`` holds for responses this version wrote."""
        return f"{self.name}@v{self.version}"


class TrainingRunVersions(models.Model):
    """The registry's side of a training run: the registered versions it started from and
    scored with, and the candidate registered from its result. The run (``rlhf``, the layer
    below) records folders only; a run launched from folders or other runs has no row."""

    run = models.OneToOneField(
        "rlhf.TrainingRun",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="registry_versions",
    )
    base_model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The parent version the run starts from.",
    )
    reward_model_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The reward model online methods (ppo, rloo, grpo) score with.",
    )
    candidate_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The candidate version registered from this run's result.",
    )

    def __str__(self):
        return f"versions of run {self.run_id}"


class ArtifactRole(models.TextChoices):
    WEIGHTS = "weights", "Weights (safetensors)"
    ADAPTER = "adapter", "LoRA adapter"
    TOKENIZER = "tokenizer", "Tokenizer"
    CONFIG = "config", "Configuration"
    OTHER = "other", "Other"


class ModelArtifact(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="artifacts")
    role = models.CharField(max_length=10, choices=ArtifactRole.choices)
    path = models.CharField(max_length=500, help_text="Relative to the version's artifact_dir.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["version", "path"]
        constraints = [
            models.UniqueConstraint(fields=["version", "path"], name="artifact_unique_path")
        ]


class ModelAlias(models.Model):
    """A movable name (``champion``) for one version of a project. Moves are audited."""

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.PROTECT, related_name="model_aliases"
    )
    name = models.SlugField(max_length=50)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="alias_unique_name")
        ]


class AuditAction(models.TextChoices):
    REGISTERED = "registered", "Registered"
    TRANSITION = "transition", "State changed"
    ALIAS_SET = "alias_set", "Alias set"
    ROLLBACK = "rollback", "Alias rolled back"


class AuditLogImmutable(Exception):
    """The audit log is append-only: nothing may update or delete an event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditLogImmutable("audit events cannot be updated")

    def delete(self):
        raise AuditLogImmutable("audit events cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditLogImmutable("audit events cannot be updated")

    def update_or_create(self, defaults=None, **kwargs):
        raise AuditLogImmutable("audit events cannot be updated")

    def select_for_update(self, **kwargs):
        raise AuditLogImmutable("audit events are never locked for update")


class AuditEvent(models.Model):
    """Who did what to which version, when, why, and what evidence they were shown."""

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.PROTECT, related_name="model_audit_events"
    )
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="audit_events")
    action = models.CharField(max_length=12, choices=AuditAction.choices)
    from_state = models.CharField(max_length=10, blank=True)
    to_state = models.CharField(max_length=10, blank=True)
    alias = models.CharField(max_length=50, blank=True)
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="As it was at the time; 'system'.")
    reason = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "id"], name="audit_project_order")]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditLogImmutable("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditLogImmutable("audit events cannot be deleted")


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class GenerationPurpose(models.TextChoices):
    ANSWER = "answer", "Answer the prompts"
    PROMPT_VARIANT = "prompt_variant", "Propose prompt variants"
    CORRECTION = "correction", "Propose corrections of rejected responses"


class GenerationJob(models.Model):
    """A version writing responses for a set of prompts, in a ``generation`` queue worker."""

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="generation_jobs"
    )
    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="generation_jobs"
    )
    prompt_ids = models.JSONField(help_text="annotation.Prompt ids, in order.")
    config = models.JSONField(help_text="rlhf.training.generation.GenerationConfig as a dict.")
    # What the version writes: answers to the prompts (Responses), or proposals a person
    # confirms (models_registry.proposals): ``variants`` rewordings of each prompt, or a
    # correction of each rejected response in ``response_ids``.
    purpose = models.CharField(max_length=16, choices=GenerationPurpose.choices, default="answer")
    variants = models.PositiveSmallIntegerField(default=1)
    response_ids = models.JSONField(
        default=list, blank=True, help_text="annotation.Response ids a correction job rewrites."
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    responses_created = models.PositiveIntegerField(default=0)
    backend = models.CharField(max_length=20, blank=True)
    error = models.TextField(blank=True)
    task_result_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="generationjob_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(done__lte=F("total")), name="generationjob_done_within_total"
            ),
        ]


class RoundKind(models.TextChoices):
    REVIEW = "review", "Blind review: candidate vs champion"
    ANNOTATION = "annotation", "Next annotation round: two champion samples per prompt"


class RoundStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    GENERATING = "generating", "Generating responses"
    READY = "ready", "Tasks queued"
    FAILED = "failed", "Failed"


class LoopRound(models.Model):
    """One turn of the human-feedback loop for one version (``models_registry.review_cycle``).

    A review round makes a candidate and the champion answer the project's pinned evaluation
    prompts plus a sample of fresh ones, and queues blind pairwise tasks between the two answers
    (the candidate's canonical side drawn at random per task, recorded in ``candidate_positions``;
    each annotator then sees the two in an order of their own). An annotation round makes the new
    champion answer fresh prompts twice, with different seeds, and queues those pairs.
    """

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="loop_rounds"
    )
    kind = models.CharField(max_length=10, choices=RoundKind.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="loop_rounds")
    opponent = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The champion a review round compares against, as it was at the start.",
    )
    status = models.CharField(
        max_length=10, choices=RoundStatus.choices, default=RoundStatus.QUEUED
    )
    eval_prompt_ids = models.JSONField(default=list, help_text="Pinned evaluation prompts used.")
    fresh_prompt_ids = models.JSONField(default=list, help_text="Sampled unpinned prompts used.")
    generation = models.JSONField(default=dict, help_text="GenerationConfig fields (no seed).")
    generation_job_ids = models.JSONField(default=list, blank=True)
    task_ids = models.JSONField(default=list, blank=True)
    candidate_positions = models.JSONField(
        default=dict, blank=True, help_text="{task id: canonical position of the candidate}."
    )
    skipped = models.JSONField(
        default=list, blank=True, help_text="[{prompt, why}] for prompts that made no task."
    )
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Reward, KL and length statistics (review rounds)."
    )
    evaluation_error = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=RoundKind.values), name="loopround_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RoundStatus.values), name="loopround_status_valid"
            ),
        ]

    @property
    def prompt_ids(self) -> list[int]:
        return [*self.eval_prompt_ids, *self.fresh_prompt_ids]


# The serving domain's tables live beside their code (models_registry/serving/).
from models_registry.serving.models import (  # noqa: E402, F401
    CanaryMode,
    EngineKind,
    EngineStatus,
    FeedbackKind,
    ServedFeedback,
    ServedResponse,
    ServedStatus,
    ServingEngine,
    ServingSettings,
    ServingTarget,
)
