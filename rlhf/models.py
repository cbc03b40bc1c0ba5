"""Training data as Django objects: immutable dataset snapshots.

A snapshot freezes exactly which labels (id and version) it holds, with the pipeline config
that turned them into rows, the code version, and what came out: counts, content hash, report
and data card. Training runs reference a snapshot, never the live label tables. Nothing edits
a snapshot after it is built; its fields are written once by ``rlhf.services``.
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

    # What comes out.
    counts_by_kind = models.JSONField(default=dict, blank=True)
    row_counts = models.JSONField(default=dict, blank=True, help_text="{shape: {split: n}}")
    content_sha256 = models.CharField(max_length=64, blank=True)
    data_card = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True)
    export_path = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-id"], name="snapshot_project_recent")]

    def __str__(self):
        return f"Snapshot {self.pk} of project {self.project_id}"
