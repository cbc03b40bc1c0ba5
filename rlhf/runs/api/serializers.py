"""Request and response shapes of the training-run API (shape only; rules live in services)."""

from rest_framework import serializers

from rlhf.models import TrainingRun
from rlhf.runs import versions
from rlhf.training.config import METHODS, PRESETS

SUMMARY_FIELDS = [
    "id", "project", "name", "method", "method_title", "dataset_snapshot", "status", "attempt",
    "max_attempts", "cancel_requested", "revision", "progress", "heartbeat_at", "created_at",
    "started_at", "finished_at", "created_by", "error", "device", "base_model_version",
    "base_model_run", "reward_model_version", "reward_model_run", "candidate_version",
]  # fmt: skip
DETAIL_FIELDS = [
    *SUMMARY_FIELDS, "config", "data_path", "worker", "log_tail", "checkpoints", "attempts_log",
    "library_versions", "code_version", "metrics", "result", "artifact_dir", "artifacts",
]  # fmt: skip


class _VersionIdsSerializer(serializers.ModelSerializer):
    """A run with the ids of the registered versions it started from, scored with and became
    (told by the registry through ``rlhf.runs.versions``; None without one)."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    base_model_version = serializers.IntegerField(
        source="base_model_version_id", read_only=True, allow_null=True
    )
    reward_model_version = serializers.IntegerField(
        source="reward_model_version_id", read_only=True, allow_null=True
    )
    candidate_version = serializers.IntegerField(
        source="candidate_version_id", read_only=True, allow_null=True
    )

    def to_representation(self, instance):
        if not hasattr(instance, "candidate_version_id"):
            versions.annotate_runs([instance])  # lists annotate all their runs at once
        return super().to_representation(instance)


class TrainingRunSummarySerializer(_VersionIdsSerializer):
    class Meta:
        model = TrainingRun
        fields = SUMMARY_FIELDS
        read_only_fields = SUMMARY_FIELDS


class TrainingRunDetailSerializer(_VersionIdsSerializer):
    class Meta:
        model = TrainingRun
        fields = DETAIL_FIELDS
        read_only_fields = DETAIL_FIELDS


class TrainingRunLaunchSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=METHODS)
    snapshot = serializers.IntegerField(help_text="A ready dataset snapshot of the project.")
    config = serializers.DictField(
        required=False,
        help_text="Fields of the method's config (GET /api/training/methods/); omitted ones "
        "take their documented defaults.",
    )
    preset = serializers.ChoiceField(
        choices=list(PRESETS),
        required=False,
        allow_blank=True,
        help_text="A named set of config values (quick_cpu, small_gpu, full_run); fields given "
        "in config override it.",
    )
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    base_model_run = serializers.IntegerField(
        required=False, allow_null=True, help_text="Start from this succeeded run's model."
    )
    reward_model_run = serializers.IntegerField(
        required=False, allow_null=True, help_text="Score with this succeeded reward run's model."
    )
    base_model_version = serializers.IntegerField(
        required=False, allow_null=True, help_text="Start from this registered model version."
    )
    reward_model_version = serializers.IntegerField(
        required=False, allow_null=True, help_text="Score with this registered reward model."
    )
    max_attempts = serializers.IntegerField(min_value=1, max_value=20, required=False)


class MetricsSerializer(serializers.Serializer):
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.ListField()),
        help_text="{name: [[step, value], ...]}",
    )
    last_id = serializers.IntegerField(help_text="Pass as ?after= to get only newer points.")


class TrainingMethodSerializer(serializers.Serializer):
    method = serializers.CharField()
    title = serializers.CharField()
    shape = serializers.CharField()
    fields = serializers.ListField(child=serializers.DictField())


class RunCompareSerializer(serializers.Serializer):
    runs = serializers.ListField(child=serializers.DictField(), help_text="[{id, label}], in order")
    metrics = serializers.DictField(
        child=serializers.DictField(child=serializers.ListField(child=serializers.ListField())),
        help_text="{metric: {run id: [[step, value], ...]}}",
    )
    config = serializers.ListField(
        child=serializers.DictField(),
        help_text="[{name, values: [one per run, null where absent], differs}]: facts, then "
        "config fields by name",
    )
