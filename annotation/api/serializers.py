"""Request and response shapes of the annotation API (validation of shape only;
business rules live in the services)."""

from rest_framework import serializers

from annotation.importers import IMPORT_KINDS
from annotation.models import IMPORTABLE_TASK_KINDS, ImportBatch, Project
from annotation.roles import Role
from config.api import CheckedJSONField
from config.untrusted import INT64_MAX
from formats.peers import WRITERS as PEER_FORMATS


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id", "name", "slug", "guidelines", "task_kinds", "overlap", "rubric",
            "lease_seconds", "created_at", "role",
        ]  # fmt: skip
        read_only_fields = ["id", "slug", "created_at", "role"]

    def get_role(self, project) -> str | None:
        return getattr(project, "viewer_role", None)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False)
    guidelines = serializers.CharField(required=False, allow_blank=True, max_length=200_000)
    task_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=list(IMPORTABLE_TASK_KINDS)),
        required=False,
        min_length=1,
    )
    overlap = serializers.IntegerField(min_value=1, max_value=50, required=False)
    rubric = CheckedJSONField(required=False)
    lease_seconds = serializers.IntegerField(min_value=30, max_value=86_400, required=False)
    settings = CheckedJSONField(
        required=False,
        help_text=(
            "The lead's settings as PATCH /api/projects/{id}/settings/ takes them "
            '({"quality": {"gold_rate": 0.1}, ...}); a bad one refuses the creation.'
        ),
    )


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    guidelines = serializers.CharField(required=False, allow_blank=True, max_length=200_000)
    task_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=list(IMPORTABLE_TASK_KINDS)),
        required=False,
        min_length=1,
    )
    overlap = serializers.IntegerField(min_value=1, max_value=50, required=False)
    rubric = CheckedJSONField(required=False)
    lease_seconds = serializers.IntegerField(min_value=30, max_value=86_400, required=False)


class MemberSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(max_length=254, help_text="A username or an e-mail address.")
    role = serializers.ChoiceField(choices=Role.values)
    group = serializers.CharField(
        read_only=True, help_text="Optional annotator group (bias audit); empty: none."
    )


class MemberUpdateSerializer(serializers.Serializer):
    group = serializers.CharField(
        max_length=64,
        allow_blank=True,
        trim_whitespace=True,
        help_text="An optional annotator group, compared by each snapshot's bias audit; "
        "an empty string takes the member out of every group.",
    )


class InvitationCreatedSerializer(serializers.Serializer):
    status = serializers.CharField()


class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    project_name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.values)
    invited_by = serializers.CharField(allow_null=True, required=False)
    created_at = serializers.DateTimeField(required=False)
    state = serializers.CharField(required=False)


class ProjectInvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    invitee = serializers.CharField(help_text="The username or e-mail invited, casefolded.")
    role = serializers.ChoiceField(choices=Role.values)
    invited_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class InvitationAnswerSerializer(serializers.Serializer):
    accept = serializers.BooleanField(help_text="true: join the project; false: decline.")


class LabelExportQuerySerializer(serializers.Serializer):
    # Not "format": DRF reads ?format= to pick a renderer.
    tool = serializers.ChoiceField(choices=list(PEER_FORMATS))


class ImportRequestSerializer(serializers.Serializer):
    file = serializers.FileField()
    kind = serializers.ChoiceField(choices=list(IMPORT_KINDS))
    annotator_name = serializers.CharField(max_length=100, required=False)
    task_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=list(IMPORTABLE_TASK_KINDS)), required=False
    )


class ImportBatchSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportBatch
        fields = ["id", "filename", "format", "sha256", "rows", "counts", "created_at"]


class NextTaskRequestSerializer(serializers.Serializer):
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=INT64_MAX),
        required=False,
        max_length=10,
    )


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()
    html = serializers.CharField()


class ShownResponseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    html = serializers.CharField()


class LabelSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.IntegerField()
    kind = serializers.CharField()
    payload = serializers.JSONField()
    shown_order = serializers.ListField(child=serializers.IntegerField(), allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())
    duration_ms = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField()
    reviewed = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TaskViewSerializer(serializers.Serializer):
    task_id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    kind = serializers.CharField()
    prompt = MessageSerializer(many=True)
    responses = ShownResponseSerializer(many=True)
    rubric = serializers.JSONField()
    lease_expires_at = serializers.DateTimeField()
    lease_state = serializers.CharField()
    label = LabelSerializer(allow_null=True)


class LabelSubmitSerializer(serializers.Serializer):
    payload = CheckedJSONField()
    flags = serializers.ListField(child=serializers.CharField(max_length=32), required=False,
                                  max_length=10)  # fmt: skip
    duration_ms = serializers.IntegerField(min_value=0, max_value=86_400_000, required=False)


class LabelEditSerializer(serializers.Serializer):
    payload = CheckedJSONField()
    flags = serializers.ListField(child=serializers.CharField(max_length=32), required=False,
                                  max_length=10)  # fmt: skip


class SkipSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True)


class LeaseSerializer(serializers.Serializer):
    task_id = serializers.IntegerField()
    state = serializers.CharField()
    expires_at = serializers.DateTimeField()


class ProgressSerializer(serializers.Serializer):
    tasks_total = serializers.IntegerField()
    tasks_done = serializers.IntegerField()
    tasks_open = serializers.IntegerField()
    labels_total = serializers.IntegerField()
    my_labels = serializers.IntegerField()
    my_skips = serializers.IntegerField()
    by_kind = serializers.JSONField()


class RevisionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    payload = serializers.JSONField()
    flags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
