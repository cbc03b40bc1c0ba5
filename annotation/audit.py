"""The data audit log: who exported or downloaded data, who erased an account, what a retention
pass cleared. Append-only, like the model registry's ``AuditEvent`` (which stays the log of
what happened to model versions): the model and its QuerySet refuse updates and deletes, and on
PostgreSQL a trigger refuses them in the database too (migration ``0007``).

It lives in ``annotation``, the lowest app, so every layer above (snapshots, runs, the
registry) records into the same table without importing upwards. An event names its actor by
foreign key and never copies their name: an erased account's pseudonym then shows in every
event it made, and no username outlives its erasure here.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DataAuditAction(models.TextChoices):
    SNAPSHOT_EXPORTED = "snapshot_exported", "Snapshot export requested"
    SNAPSHOT_DOWNLOADED = "snapshot_downloaded", "Snapshot file downloaded"
    LABELS_EXPORTED = "labels_exported", "Labels exported"
    RUN_ARTIFACT_DOWNLOADED = "run_artifact_downloaded", "Run artifact downloaded"
    MODEL_BUNDLE_DOWNLOADED = "model_bundle_downloaded", "Model bundle downloaded"
    USER_ERASED = "user_erased", "Account erased"
    RETENTION_APPLIED = "retention_applied", "Retention applied"
    FIELD_KEYS_ROTATED = "field_keys_rotated", "Field keys rotated"
    TASKS_BULK_CHANGED = "tasks_bulk_changed", "Tasks changed in bulk"
    TEXT_SEALED = "text_sealed", "Personal-data text sealed"
    TEXT_UNSEALED = "text_unsealed", "Personal-data text unsealed"
    SERVING_STARTED = "serving_started", "Serving started"
    SERVING_STOPPED = "serving_stopped", "Serving stopped"
    SERVING_SETTINGS_CHANGED = "serving_settings_changed", "Serving settings changed"


class DataAuditImmutable(Exception):
    """The data audit log is append-only."""


class DataAuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise DataAuditImmutable("data audit events cannot be updated")

    def delete(self):
        raise DataAuditImmutable("data audit events cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise DataAuditImmutable("data audit events cannot be updated")

    def update_or_create(self, defaults=None, **kwargs):
        raise DataAuditImmutable("data audit events cannot be updated")


class DataAuditEvent(models.Model):
    project = models.ForeignKey(
        "annotation.Project",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="data_audit_events",
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Empty: the system (a retention pass, a command run without --actor).",
    )
    action = models.CharField(max_length=32, choices=DataAuditAction.choices)
    subject = models.CharField(
        max_length=300, help_text="What it was about: 'snapshot:12', 'run:5:model.safetensors'."
    )
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DataAuditQuerySet.as_manager()

    class Meta:
        app_label = "annotation"
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "id"], name="data_audit_project_order")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(action__in=[a.value for a in DataAuditAction]),
                name="data_audit_action_valid",
            )
        ]

    def __str__(self):
        return f"{self.action} {self.subject}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise DataAuditImmutable("data audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DataAuditImmutable("data audit events cannot be deleted")


def data_audit_record(
    *, action: str, subject: str, actor=None, project=None, details: dict | None = None
) -> DataAuditEvent:
    """Append one event (in the caller's transaction, so a refused action records nothing)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return DataAuditEvent.objects.create(
        action=action, subject=subject[:300], actor=actor, project=project, details=details or {}
    )
