"""Serving: which engine serves which version, the project's serving settings, and what the
gateway served (usage records) and heard back (feedback).

- ``ServingEngine``: one engine process (``transformers serve`` or vLLM) started by
  ``manage.py serve`` for one version; the gateway routes only to ``ready`` engines and the
  supervisor stops a ``draining`` one once its in-flight requests are done.
- ``ServingSettings``: per project, the canary (split or shadow), the per-key rate limit, and
  the consent to learn from served traffic (off by default).
- ``ServedResponse``: one usage record per answer (a shadow answer included), written
  ``in_flight`` before the upstream call and finished after its last byte.
- ``ServedFeedback``: thumbs up/down on one response, or a preference between two.
- ``ServingTarget``: serving as desired state, one per project: what the project's Serving page
  (or API) asked to serve (an alias or a pinned version, with engine options) and whether it is
  on; ``manage.py serve --watch`` runs a supervisor for each enabled one it holds the lease of
  (``holder``, ``lease_expires_at``): one watcher, on one host, per target.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class EngineKind(models.TextChoices):
    TRANSFORMERS = "transformers", "transformers serve"
    VLLM = "vllm", "vLLM OpenAI server"


class EngineStatus(models.TextChoices):
    STARTING = "starting", "Starting"
    READY = "ready", "Ready"
    DRAINING = "draining", "Draining"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


# An engine in these has (or may have) a process behind it; stopped and failed ones do not.
LIVE_ENGINE_STATUSES = (EngineStatus.STARTING, EngineStatus.READY, EngineStatus.DRAINING)


class ServingEngine(models.Model):
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.PROTECT, related_name="serving_engines"
    )
    version = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="serving_engines"
    )
    alias = models.SlugField(
        max_length=50, blank=True, help_text="The alias it serves ('' for a pinned version)."
    )
    role = models.CharField(max_length=16, default="primary", help_text="primary | canary")
    engine = models.CharField(max_length=16, choices=EngineKind.choices)
    status = models.CharField(
        max_length=10, choices=EngineStatus.choices, default=EngineStatus.STARTING
    )
    url = models.CharField(max_length=200, help_text="Base URL, e.g. http://127.0.0.1:18000")
    upstream_model = models.CharField(max_length=500, blank=True)
    folder = models.CharField(max_length=1000, help_text="The weights it loaded.")
    pid = models.IntegerField(null=True, blank=True)
    host = models.CharField(max_length=255, blank=True)
    watcher = models.CharField(
        max_length=200,
        blank=True,
        help_text="The `serve --watch` that started it (its lease id; '' for `serve` by hand).",
    )
    command = models.JSONField(default=list)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    draining_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "status"], name="engine_project_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=EngineStatus.values), name="serving_engine_status_valid"
            )
        ]

    def __str__(self):
        return f"{self.engine} #{self.pk} ({self.status}) for version {self.version_id}"


class CanaryMode(models.TextChoices):
    OFF = "off", "Off"
    SPLIT = "split", "Split: a share of requests is answered by the candidate"
    SHADOW = "shadow", "Shadow: the candidate answers too, recorded, never returned"


class ServingSettings(models.Model):
    project = models.OneToOneField(
        "annotation.Project", on_delete=models.CASCADE, related_name="serving_settings"
    )
    canary_version = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    canary_mode = models.CharField(max_length=8, choices=CanaryMode.choices, default=CanaryMode.OFF)
    canary_share = models.FloatField(
        default=0.0, help_text="Split: the share of requests (0..1) the candidate answers."
    )
    requests_per_minute = models.PositiveIntegerField(
        default=600, help_text="Per API key, over a sliding minute; 429 beyond it."
    )
    learn_from_traffic = models.BooleanField(
        default=False,
        help_text="Consent: served conversations and their feedback become the project's "
        "prompts, responses and labels (PII-scrubbed). Off by default.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(canary_share__gte=0) & Q(canary_share__lte=1),
                name="serving_canary_share_range",
            )
        ]


class ServedStatus(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    OK = "ok", "Answered"
    FAILED = "failed", "Failed"


class ServedResponse(models.Model):
    """One answer the gateway asked an engine for: the usage record."""

    response_id = models.CharField(max_length=100, unique=True)
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="served_responses"
    )
    token = models.ForeignKey(
        "annotation.ApiToken", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.ForeignKey(
        "models_registry.ModelVersion", on_delete=models.PROTECT, related_name="+"
    )
    engine = models.ForeignKey(ServingEngine, on_delete=models.PROTECT, related_name="served")
    requested_model = models.CharField(max_length=200)
    route = models.CharField(max_length=16, default="primary", help_text="primary|split|shadow")
    shadow_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="shadows"
    )
    streamed = models.BooleanField(default=False)
    prompt_hash = models.CharField(max_length=64, help_text="Of the messages (kept always).")
    status = models.CharField(
        max_length=10, choices=ServedStatus.choices, default=ServedStatus.IN_FLIGHT
    )
    http_status = models.PositiveSmallIntegerField(null=True)
    prompt_tokens = models.PositiveIntegerField(null=True)
    completion_tokens = models.PositiveIntegerField(null=True)
    ttft_ms = models.FloatField(null=True)
    latency_ms = models.FloatField(null=True)
    # Kept only while the project consents to learn from traffic (else empty).
    messages = models.JSONField(default=list, blank=True)
    answer = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["token", "created_at"], name="served_token_time"),
            models.Index(fields=["engine", "status"], name="served_engine_status"),
        ]


class FeedbackKind(models.TextChoices):
    THUMBS = "thumbs", "Thumbs up or down"
    PREFERENCE = "preference", "Preference between two answers"


class ServedFeedback(models.Model):
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="served_feedback"
    )
    token = models.ForeignKey(
        "annotation.ApiToken", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=12, choices=FeedbackKind.choices)
    response = models.ForeignKey(ServedResponse, on_delete=models.CASCADE, related_name="+")
    rejected = models.ForeignKey(
        ServedResponse, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    thumbs_up = models.BooleanField(null=True)
    learned_label = models.ForeignKey(
        "annotation.Label", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]


class ServingTarget(models.Model):
    """What a project wants served (one row per project): ``manage.py serve --watch`` keeps a
    supervisor running for it while ``enabled``, and drains and stops it once it is not."""

    project = models.OneToOneField(
        "annotation.Project", on_delete=models.CASCADE, related_name="serving_target"
    )
    alias = models.SlugField(
        max_length=50, blank=True, help_text="Follow this alias ('' when a version is pinned)."
    )
    version = models.ForeignKey(
        "models_registry.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="A pinned version (empty when following an alias).",
    )
    enabled = models.BooleanField(default=True)
    options = models.JSONField(
        default=dict, blank=True, help_text="Engine options: engine, device (ServeConfig's)."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(
        blank=True, help_text="Why the watcher's last step failed (empty while all is well)."
    )
    # The lease: one ``serve --watch`` at a time runs the target's engines (see watcher.py).
    holder = models.CharField(
        max_length=200,
        blank=True,
        help_text="The watcher that holds the target ('<hostname>:<pid>:<random>'; '' free).",
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The holder's lease ends then unless renewed (DB clock)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(alias="") & Q(version__isnull=False))
                | (~Q(alias="") & Q(version__isnull=True)),
                name="serving_target_alias_or_version",
            )
        ]

    def __str__(self):
        what = self.alias or f"version {self.version_id}"
        return f"serve {what} of project {self.project_id} ({'on' if self.enabled else 'off'})"
