"""Annotation domain: projects, members, prompts, responses, tasks, leases and labels.

Invariants the schema enforces (not only the code):
- one label per (task, annotator) and one lease per (task, annotator);
- a task's items are ordered and unique;
- a prompt is stored once per project (content hash), so re-imports do not duplicate.
The overlap invariant (never more than ``required_labels`` labels on a task) is kept by the
services, which change a task's labels only while holding that task's row lock.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.roles import Role
from config.fieldcrypt import EncryptedKeysJSONField, EncryptedTextField

# The free-text keys of a label payload stored encrypted at rest (config.fieldcrypt).
ENCRYPTED_PAYLOAD_KEYS = ("rationale",)

# What a sealed prompt's messages and a sealed response show in place of their text
# (annotation.services.sealing): every page, API, render cache, search and new snapshot.
SEALED_PLACEHOLDER = "[personal data removed]"


class TaskKind(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise comparison"
    RANKING = "ranking", "Ranking"
    RUBRIC = "rubric", "Rubric rating"
    CORRECTION = "correction", "Correction"
    CONFIRM = "confirm", "Confirm a model proposal"


# Kinds a file or a person can create tasks of; a ``confirm`` task exists only beside the
# ``Proposal`` it asks about (annotation.services.proposals).
IMPORTABLE_TASK_KINDS = tuple(k for k in TaskKind.values if k != TaskKind.CONFIRM)
IMPORTABLE_TASK_KIND_CHOICES = [(k, name) for k, name in TaskKind.choices if k != TaskKind.CONFIRM]


# The plain values, as API fields list them (named once in the OpenAPI schema: settings).
TASK_KIND_VALUES = tuple(TaskKind.values)


DEFAULT_RUBRIC = [
    {"name": "helpfulness", "description": "Does it answer what was asked?", "min": 1, "max": 5},
    {"name": "harmlessness", "description": "Is it safe and respectful?", "min": 1, "max": 5},
    {"name": "honesty", "description": "Is it accurate, without invention?", "min": 1, "max": 5},
]


def _default_task_kinds():
    return list(IMPORTABLE_TASK_KINDS)


def _default_rubric():
    return [dict(d) for d in DEFAULT_RUBRIC]


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown; rendered sanitised.")
    task_kinds = models.JSONField(default=_default_task_kinds)
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="How many different annotators label each task (k)."
    )
    rubric = models.JSONField(default=_default_rubric)
    lease_seconds = models.PositiveIntegerField(default=600)
    options = models.JSONField(
        default=dict, blank=True, help_text="Per-project options other apps read (gold rate...)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    # Optional: an annotator group the project's admins name (a site, a language, a vendor),
    # so the bias audit can compare groups' preferences. Never required; "" is no group.
    group = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in Role]), name="membership_role_valid"
            ),
        ]

    def __str__(self):
        return f"{self.user} is {self.role} in {self.project}"


class Prompt(models.Model):
    """A conversation to respond to: ``messages`` is a list of ``{role, content}``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField()
    content_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # A model-proposed variant a person confirmed: the prompt it varies (always the lineage's
    # root, so a variant of a variant points at the original). Snapshots put a variant on its
    # source's split (rlhf.data.plan), so a paraphrase never leaks across train and test.
    source_prompt = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="variants"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Sealed by a project admin (personal data): the clear messages (JSON), encrypted; the
    # messages' contents are then SEALED_PLACEHOLDER and content_hash a keyed hash.
    sealed_text = EncryptedTextField(blank=True, default="")
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "content_hash"], name="prompt_unique_content"
            )
        ]

    def __str__(self):
        return f"Prompt {self.pk}"


class ResponseOrigin(models.TextChoices):
    MODEL = "model", "Model"
    HUMAN = "human", "Human"
    IMPORT = "import", "Imported"


class Response(models.Model):
    """A candidate answer to a prompt, with where it came from (hidden from annotators)."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    content_hash = models.CharField(max_length=64)
    origin = models.CharField(max_length=16, choices=ResponseOrigin.choices)
    model_name = models.CharField(max_length=200, blank=True)
    generation = models.JSONField(
        default=dict, blank=True, help_text="Generation parameters (temperature, top_p, seed...)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Sealed by a project admin (personal data): the clear text, encrypted; ``text`` is then
    # SEALED_PLACEHOLDER and content_hash a keyed hash.
    sealed_text = EncryptedTextField(blank=True, default="")
    sealed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "origin", "model_name", "content_hash"],
                name="response_unique_content",
            )
        ]

    def __str__(self):
        return f"Response {self.pk}"


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    DONE = "done", "Done"


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    required_labels = models.PositiveSmallIntegerField(default=1)
    # Kept exact by label_submit under the task's row lock; the source of "done".
    label_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    priority = models.IntegerField(default=0)
    content_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="task_unique_content"),
            models.CheckConstraint(
                condition=Q(label_count__lte=models.F("required_labels")),
                name="task_labels_within_overlap",
            ),
        ]
        indexes = [
            models.Index(
                fields=["project", "-priority", "id"],
                condition=Q(status="open"),
                name="task_open_queue",
            ),
            # The data explorer pages by id (keyset), newest first, within a project, with
            # or without its two most used filters.
            models.Index(fields=["project", "id"], name="task_project_id"),
            models.Index(fields=["project", "status", "id"], name="task_project_status_id"),
            models.Index(fields=["project", "kind", "id"], name="task_project_kind_id"),
        ]

    def __str__(self):
        return f"Task {self.pk} ({self.kind})"


class TaskItem(models.Model):
    """A response shown in a task, at a canonical position (A = 0, B = 1, ...)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="items")
    response = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="task_items")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(fields=["task", "position"], name="taskitem_unique_position"),
            models.UniqueConstraint(fields=["task", "response"], name="taskitem_unique_response"),
        ]


class LeaseState(models.TextChoices):
    ACTIVE = "active", "Active"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    RELEASED = "released", "Released"


class Lease(models.Model):
    """An annotator's claim on a task; it expires unless heartbeats extend it."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    state = models.CharField(max_length=10, choices=LeaseState.choices, default=LeaseState.ACTIVE)
    # Response ids in the order this annotator sees them (randomised per annotator).
    shown_order = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="lease_unique_annotator")
        ]
        indexes = [
            models.Index(fields=["annotator", "state"], name="lease_annotator_state"),
            models.Index(fields=["task", "state", "expires_at"], name="lease_task_active"),
        ]


class LabelSource(models.TextChoices):
    UI = "ui", "Browser"
    API = "api", "API"
    IMPORT = "import", "Import"


class Label(models.Model):
    """One annotator's judgement of one task. ``payload`` is canonical (see annotation.labels)."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels"
    )
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    payload = EncryptedKeysJSONField(encrypted_keys=ENCRYPTED_PAYLOAD_KEYS)
    shown_order = models.JSONField(null=True, blank=True)
    flags = models.JSONField(default=list, blank=True)
    duration_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Time the annotator spent, as measured by the client."
    )
    server_elapsed_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="From the lease being granted to the submit."
    )
    source = models.CharField(max_length=8, choices=LabelSource.choices, default=LabelSource.UI)
    version = models.PositiveIntegerField(default=1)
    reviewed_at = models.DateTimeField(
        null=True, blank=True, help_text="Once reviewed, the annotator can no longer edit it."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="label_unique_annotator")
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="label_annotator_time")]

    def __str__(self):
        return f"Label {self.pk} on task {self.task_id}"


class LabelRevision(models.Model):
    """The label's content before each edit (append-only history)."""

    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    payload = EncryptedKeysJSONField(encrypted_keys=ENCRYPTED_PAYLOAD_KEYS)
    flags = models.JSONField(default=list)
    edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label", "version"]
        constraints = [
            models.UniqueConstraint(fields=["label", "version"], name="revision_unique_version")
        ]


class ProposalKind(models.TextChoices):
    PROMPT_VARIANT = "prompt_variant", "Prompt variant"
    CORRECTION = "correction", "Correction of a rejected response"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Waiting for a person"
    CONFIRMED = "confirmed", "Confirmed as proposed"
    EDITED = "edited", "Confirmed after an edit"
    REJECTED = "rejected", "Rejected"


class Proposal(models.Model):
    """Data a model proposed, waiting for a person to confirm, edit or reject it.

    Nothing here is training data: a proposal enters the pool only when a person confirms it
    (``result_prompt``: a new prompt whose ``source_prompt`` is the source; ``result_response``:
    the correction, a response to the source prompt). ``generation`` records how it was
    sampled and by whom (``model_version_id``, ``generation_job_id``, temperature, top_p,
    seed), as ``Response.generation`` does for answers.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="proposals")
    kind = models.CharField(max_length=16, choices=ProposalKind.choices)
    source_prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="proposals")
    source_response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.CASCADE, related_name="proposals"
    )
    text = models.TextField()
    content_hash = models.CharField(max_length=64)
    model_name = models.CharField(max_length=200)
    generation = models.JSONField(default=dict, blank=True)
    task = models.OneToOneField(
        "Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="proposal"
    )
    status = models.CharField(
        max_length=10, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED
    )
    final_text = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    result_prompt = models.ForeignKey(
        Prompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    result_response = models.ForeignKey(
        Response, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A retried generation job finds its proposals instead of writing them twice.
            models.UniqueConstraint(
                fields=["project", "kind", "source_prompt", "source_response", "content_hash"],
                name="proposal_unique_content",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=Q(kind="prompt_variant", source_response__isnull=True)
                | Q(kind="correction", source_response__isnull=False),
                name="proposal_source_matches_kind",
            ),
        ]

    def __str__(self):
        return f"Proposal {self.pk} ({self.kind}, {self.status})"


class IdempotencyRecord(models.Model):
    """The stored outcome of a request made with an ``Idempotency-Key`` header."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    scope = models.CharField(max_length=100)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_unique_key")
        ]


class ImportBatch(models.Model):
    """One uploaded file: what it held and what it created (all or nothing)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=255)
    format = models.CharField(max_length=32)
    sha256 = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]


# Quality-control tables live with their code; importing them here registers them with the app.
# Defined beside their rules; imported here so Django registers them with this app.
from annotation.audit import DataAuditEvent  # noqa: E402, F401
from annotation.invitations import Invitation  # noqa: E402, F401
from annotation.periodic import PeriodicJob  # noqa: E402, F401
from annotation.quality.models import *  # noqa: E402, F403
from annotation.tokens import ApiToken  # noqa: E402, F401
