"""Request and response shapes of the snapshot API (shape only; rules live in services)."""

from rest_framework import serializers

from annotation.models import TaskKind
from config.api import CheckedJSONField
from formats.peers import WRITERS as PEER_WRITERS
from rlhf.models import DatasetSnapshot

SUMMARY_FIELDS = [
    "id", "project", "name", "status", "progress", "error", "created_at", "started_at",
    "finished_at", "kinds", "label_count", "counts_by_kind", "row_counts", "content_sha256",
    "split_seed", "code_version", "label_ids_sha256", "withdrawn_at", "withdrawn_reason",
]  # fmt: skip


class SnapshotSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetSnapshot
        fields = SUMMARY_FIELDS
        read_only_fields = SUMMARY_FIELDS


class SnapshotDetailSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetSnapshot
        fields = [*SUMMARY_FIELDS, "config", "report", "data_card"]
        read_only_fields = fields


class SnapshotCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=TaskKind.values), required=False
    )
    config = CheckedJSONField(
        required=False,
        help_text="PipelineConfig: {cleaning, dedup, aggregation, split}; omitted = defaults.",
    )


class ExportCreateSerializer(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z0-9_-]{1,64}$")
    max_prompt_chars = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    tools = serializers.ListField(
        child=serializers.ChoiceField(choices=list(PEER_WRITERS)),
        required=False,
        max_length=len(PEER_WRITERS),
        help_text="Also write the preference pairs as Label Studio tasks / Argilla records.",
    )


class ExportSerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    shapes = serializers.JSONField()
    rows_sha256_all = serializers.CharField()
    truncation = serializers.JSONField(allow_null=True)
    peer_exports = serializers.JSONField(allow_null=True)


class SnapshotFileSerializer(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class SnapshotArchiveSerializer(serializers.Serializer):
    file = serializers.CharField(help_text="Pass as ?file= to the download route.")
    folder = serializers.CharField(help_text="The export folder it holds ('' for all of it).")
    top = serializers.CharField(help_text="The tar's top folder.")
    size = serializers.IntegerField()


class SnapshotFilesSerializer(serializers.Serializer):
    snapshot = serializers.IntegerField()
    content_sha256 = serializers.CharField()
    manifest_sha256 = serializers.CharField()
    files = SnapshotFileSerializer(many=True)
    archives = SnapshotArchiveSerializer(many=True)


class SnapshotDownloadQuerySerializer(serializers.Serializer):
    file = serializers.CharField(
        max_length=300,
        help_text="A path of the export's MANIFEST.sha256 (e.g. preference/train.jsonl or "
        ".parquet), MANIFEST.sha256, <shape>/hf.tar (the datasets folder) or export.tar.",
    )
