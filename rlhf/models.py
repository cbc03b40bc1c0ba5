"""Training data and training runs as Django objects.

A snapshot freezes exactly which labels (id and version) it holds, with the pipeline config
that turned them into rows, the code version, and what came out: counts, content hash, report
and data card. Training runs reference a snapshot, never the live label tables. Nothing edits
a snapshot after it is built; its fields are written once by ``rlhf.snapshots.services``.

A training run records a method, its whole config (``asdict``), the snapshot and models it
starts from, and everything its worker reports: status, heartbeats, metric points, log tail,
checkpoints, artifacts. Runs change only through ``rlhf.runs.services`` (people) and
``rlhf.runs.execution`` (the worker, whose every write is fenced by ``attempt``).
"""

from django.conf import settings
from django.db import models


class SnapshotStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class DatasetSnapshot(models.Model):
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="snapshots"
    )
    name = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=8, choices=SnapshotStatus.choices, default=SnapshotStatus.PENDING
    )
    progress = models.JSONField(default=dict, blank=True, help_text="{stage, done, total}")
    error = models.TextField(blank=True)

    # What goes in, fixed at creation (filters, cut-off) and when the job starts (ids).
    kinds = models.JSONField(default=list, help_text="Label kinds included; empty = all.")
    max_label_id = models.BigIntegerField(help_text="Labels created after the request are out.")
    label_count = models.PositiveIntegerField(default=0)
    label_ids = models.BinaryField(
        default=b"", help_text="Sorted label ids, zlib-compressed int64 deltas (rlhf.data.idcodec)."
    )
    label_versions = models.BinaryField(
        default=b"", help_text="Each label's version at freezing, same order, zlib uint32."
    )
    label_ids_sha256 = models.CharField(max_length=64, blank=True)
    config = models.JSONField(help_text="rlhf.data.pipeline.PipelineConfig.as_dict()")
    split_seed = models.IntegerField(default=0)
    code_version = models.CharField(max_length=64, blank=True)
    # {str(task id): canonical payload} of the adjudications when the labels were frozen: an
    # adjudication can be edited later, and a rebuild must export the same decisions.
    frozen_adjudications = models.JSONField(default=dict, blank=True)

    # What comes out.
    counts_by_kind = models.JSONField(default=dict, blank=True)
    row_counts = models.JSONField(default=dict, blank=True, help_text="{shape: {split: n}}")
    content_sha256 = models.CharField(max_length=64, blank=True)
    data_card = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)
    export_path = models.CharField(max_length=500, blank=True)

    # Withdrawn: it holds a text a project admin sealed since (personal data). Its files are
    # kept as they are (a frozen snapshot is never rewritten) but no longer served, and no
    # new run starts from it; runs already trained on it keep their record.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="snapshot_project_recent")]

    def __str__(self):
        return f"Snapshot {self.pk} of project {self.project_id}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class TrainingRun(models.Model):
    """One training run; ``attempt`` is its fencing token.

    Each time the run is (re)queued ``attempt`` goes up by one and the job carries the new
    number. A worker writes only with ``WHERE id = … AND attempt = … AND status = 'running'``,
    so once a run has been re-queued, the attempt that lost it cannot change anything.
    """

    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="training_runs"
    )
    name = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=8, help_text="rlhf.training.config.METHODS")
    method_title = models.CharField(max_length=200, help_text="How the method is named to people.")
    config = models.JSONField(help_text="asdict() of the method's config dataclass, whole.")
    dataset_snapshot = models.ForeignKey(
        DatasetSnapshot, on_delete=models.PROTECT, related_name="training_runs"
    )
    data_path = models.CharField(max_length=500, help_text="The export folder trained on.")
    # Models the run starts from: another run's output, or a folder (always recorded too, as
    # config.base_model and config.reward_model). Registered versions a run starts from, and
    # the one registered from its result, are the registry's record (TrainingRunVersions).
    base_model_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reward_model_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    attempt = models.PositiveIntegerField(
        default=1, help_text="Fencing token: the attempt allowed to write (1, 2, …)."
    )
    max_attempts = models.PositiveIntegerField(
        default=3, help_text="Attempts lost to dead workers before the run is failed."
    )
    cancel_requested = models.BooleanField(default=False)
    revision = models.PositiveIntegerField(
        default=0, help_text="Bumped by every write, so watchers can tell that something changed."
    )
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the attempt")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    progress = models.JSONField(
        default=dict,
        blank=True,
        help_text="Latest {step, total_steps, loss, tokens_per_s, eta_s, elapsed_s}.",
    )
    log_tail = models.TextField(blank=True, help_text="The last lines of the run's log.")
    checkpoints = models.JSONField(
        default=list,
        blank=True,
        help_text="[{attempt, global_step, manifest_sha256, path}]: the only ones ever resumed.",
    )
    attempts_log = models.JSONField(
        default=list,
        blank=True,
        help_text="[{attempt, worker, started_at, ended_at, outcome, resumed_from_step}]",
    )
    error = models.TextField(blank=True)

    # Where and with what it ran, and what came out.
    device = models.CharField(max_length=200, blank=True)
    library_versions = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Final metrics (result).")
    result = models.JSONField(default=dict, blank=True, help_text="asdict(TrainingResult)")
    artifact_dir = models.CharField(max_length=500, blank=True)
    artifacts = models.JSONField(
        default=list, blank=True, help_text="[{path, sha256, bytes}], paths under artifact_dir."
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["project", "-id"], name="run_project_recent"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=RunStatus.values), name="run_status_valid"
            ),
        ]

    def __str__(self):
        return f"Run {self.pk} ({self.method}) of project {self.project_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES


class TrainingRunMetric(models.Model):
    """One point of a run's metric time series (loss, accuracy, reward, KL, tokens/s, ...).

    A row per point keeps appends cheap and lets readers fetch "points after id N"; a
    1,000-step run logs ~15 names per step (15k rows, a few hundred kB).
    """

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metric_points")
    attempt = models.PositiveIntegerField()
    step = models.IntegerField()
    name = models.CharField(max_length=100)
    value = models.FloatField()
    recorded_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"], name="runmetric_run_id")]


class TaskSelectionScore(models.Model):
    """Why an open task got its ``Task.priority``: the strategy, its score and the reward model.

    Written by ``rlhf.active_selection.task_priorities_assign`` (one row per task and
    assignment; the newest row is the one in force). Never shown to annotators: a priority or
    a reward gap beside a pair would anchor their judgement.
    """

    task = models.ForeignKey(
        "annotation.Task", on_delete=models.CASCADE, related_name="selection_scores"
    )
    strategy = models.CharField(max_length=16)
    score = models.FloatField(null=True, blank=True, help_text="informativeness; null for random")
    # The scoring reward model's own rewards of the sides at positions A and B (null when no
    # model scored the pair): read back only after a label exists (rlhf.feedback).
    reward_a = models.FloatField(null=True, blank=True)
    reward_b = models.FloatField(null=True, blank=True)
    priority = models.IntegerField()
    reward_model = models.CharField(
        max_length=500, blank=True, help_text="folder of the reward model that scored the pair"
    )
    config = models.JSONField(default=dict, blank=True, help_text="asdict(SelectionConfig)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["task", "-id"], name="selectionscore_task_newest")]
