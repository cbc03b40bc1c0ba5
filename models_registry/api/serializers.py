"""Request and response shapes of the registry API (shape only; rules live in the services)."""

from rest_framework import serializers

from annotation.models import Proposal, ProposalKind
from config.api import CheckedJSONField
from models_registry.models import (
    AuditEvent,
    GenerationJob,
    ModelAlias,
    ModelArtifact,
    ModelVersion,
    VersionKind,
    VersionState,
)


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelArtifact
        fields = ["path", "role", "sha256", "size_bytes"]


class ModelVersionSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    aliases = serializers.SerializerMethodField()
    training_run_ref = serializers.IntegerField(
        source="training_run_id", read_only=True, allow_null=True
    )
    dataset_snapshot_ref = serializers.IntegerField(
        source="dataset_snapshot_id", read_only=True, allow_null=True
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id", "project", "name", "version", "label", "kind", "state", "architecture",
            "backbone", "base_model", "parent", "source", "is_adapter", "training_run_ref",
            "dataset_snapshot_ref", "launched_by", "registered_by", "code_version",
            "chat_template_sha256", "metrics", "created_at", "aliases",
        ]  # fmt: skip

    def get_aliases(self, version) -> list[str]:
        return [a.name for a in version.aliases.all()]


class ModelVersionDetailSerializer(ModelVersionSerializer):
    artifacts = ArtifactSerializer(many=True, read_only=True)
    ancestors = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "artifact_dir", "config", "library_versions", "data_card", "model_card",
            "artifacts", "ancestors", "children", "review",
        ]  # fmt: skip

    def get_ancestors(self, version) -> list[dict]:
        return [{"id": v.pk, "label": v.label} for v in self.context["ancestors"]]

    def get_children(self, version) -> list[dict]:
        return [{"id": v.pk, "label": v.label} for v in version.children.order_by("id")]

    def get_review(self, version) -> dict:
        return self.context["review"]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "version", "action", "from_state", "to_state", "alias", "previous_version",
            "actor", "actor_name", "reason", "evidence", "created_at",
        ]  # fmt: skip


class AliasSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelAlias
        fields = ["name", "version", "updated_at"]


class RegisterBaseSerializer(serializers.Serializer):
    folder = serializers.CharField(required=False, max_length=1000, help_text="Omit: SmolLM2.")
    name = serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,99}$", required=False)
    kind = serializers.ChoiceField(choices=VersionKind.choices, default=VersionKind.POLICY)


class RegisterSerializer(serializers.Serializer):
    folder = serializers.CharField(max_length=1000)
    name = serializers.RegexField(r"^[a-z0-9][a-z0-9._-]{0,99}$")
    kind = serializers.ChoiceField(choices=VersionKind.choices, default=VersionKind.POLICY)
    parent_id = serializers.IntegerField(required=False)
    training_run_ref = serializers.IntegerField(
        required=False, help_text="A training run of the project (else 400)."
    )
    dataset_snapshot_ref = serializers.IntegerField(
        required=False, help_text="A dataset snapshot of the project (else 400)."
    )
    config = CheckedJSONField(required=False)
    metrics = CheckedJSONField(required=False)
    data_card = CheckedJSONField(required=False)


class TransitionSerializer(serializers.Serializer):
    to_state = serializers.ChoiceField(choices=VersionState.values)
    reason = serializers.CharField(allow_blank=True, default="", max_length=10_000)
    evidence = CheckedJSONField(required=False)
    without_evaluation = serializers.BooleanField(
        default=False,
        help_text="approved only: approve although the evaluation is not in (a policy's review "
        "round not evaluated yet, a reward model without held-out accuracy); recorded in the "
        "audit event",
    )


class AliasMoveSerializer(serializers.Serializer):
    version_id = serializers.IntegerField()
    reason = serializers.CharField(max_length=10_000)
    override = serializers.BooleanField(
        default=False,
        help_text="champion only: move to a version that did not pass review (a project admin "
        "other than its launcher or registrar; audited with the reason).",
    )


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=10_000)


class GenerateSerializer(serializers.Serializer):
    prompt_ids = serializers.ListField(child=serializers.IntegerField(), min_length=1)
    config = CheckedJSONField(required=False, help_text="GenerationConfig fields.")


class GenerationJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = GenerationJob
        fields = [
            "id", "project", "version", "purpose", "variants", "response_ids", "status",
            "done", "total", "responses_created", "backend", "error", "config", "created_at",
            "started_at", "finished_at",
        ]  # fmt: skip


class ProposalRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ProposalKind.choices)
    version_id = serializers.IntegerField(
        required=False, help_text="A policy version of the project; default: the champion."
    )
    prompt_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="Prompts to vary."
    )
    response_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="Rejected responses."
    )
    variants = serializers.IntegerField(required=False, default=2, min_value=1, max_value=8)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=500)
    config = CheckedJSONField(required=False, help_text="GenerationConfig fields.")


class ProposalSerializer(serializers.ModelSerializer):
    model_version_id = serializers.SerializerMethodField()

    class Meta:
        model = Proposal
        fields = [
            "id", "kind", "status", "source_prompt", "source_response", "text", "final_text",
            "model_name", "model_version_id", "generation", "task", "decided_by", "decided_at",
            "result_prompt", "result_response", "created_at",
        ]  # fmt: skip

    def get_model_version_id(self, proposal) -> int | None:
        return proposal.generation.get("model_version_id")


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    version_id = serializers.IntegerField()
    label = serializers.CharField()
    strength = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    rating = serializers.FloatField()
    rating_ci_low = serializers.FloatField()
    rating_ci_high = serializers.FloatField()
    wins = serializers.IntegerField()
    losses = serializers.IntegerField()
    ties = serializers.IntegerField()


class ReviewSettingsSerializer(serializers.Serializer):
    review_min_labels = serializers.IntegerField(required=False, allow_null=True)
    review_min_win_rate = serializers.FloatField(required=False, allow_null=True)
    review_fresh_prompts = serializers.IntegerField(required=False, allow_null=True)
    annotation_round_prompts = serializers.IntegerField(required=False, allow_null=True)
    eval_prompt_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)


class EvalPromptsSerializer(serializers.Serializer):
    prompt_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    prompts = serializers.ListField(
        child=serializers.ListField(child=serializers.DictField()),
        required=False,
        help_text="Conversations to store and pin: lists of {role, content}.",
    )
    replace = serializers.BooleanField(default=False)


class BundleRequestSerializer(serializers.Serializer):
    adapter_only = serializers.BooleanField(
        default=False, help_text="A LoRA version: the adapter alone instead of merged weights."
    )


class BundleStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ready", "queued", "failed", "missing"])
    mode = serializers.ChoiceField(choices=["full", "merged", "adapter"])
    name = serializers.CharField(help_text="The tar's top folder: <name>-v<n>[-adapter].")
    error = serializers.CharField(help_text="Why the last build failed, if it did.")


class ServingSettingsSerializer(serializers.Serializer):
    """PATCH: any of these; the rules (ranges, the canary a policy of this project) are
    ``serving_settings_update``'s."""

    canary_version = serializers.IntegerField(
        required=False, allow_null=True, help_text="A policy version id of this project."
    )
    canary_mode = serializers.CharField(required=False, help_text="off | split | shadow")
    canary_share = serializers.FloatField(required=False, help_text="Split: 0..1.")
    requests_per_minute = serializers.IntegerField(required=False, help_text="Per API key.")
    learn_from_traffic = serializers.BooleanField(
        required=False,
        help_text="Consent: served conversations and feedback become project data (scrubbed).",
    )


class ServingTargetRequestSerializer(serializers.Serializer):
    alias = serializers.SlugField(
        required=False, default="", allow_blank=True, help_text="Follow this alias."
    )
    version = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="Or pin this version id."
    )
    engine = serializers.CharField(required=False, default="auto")
    device = serializers.CharField(required=False, default="auto")


class ServingTargetSerializer(serializers.Serializer):
    alias = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    enabled = serializers.BooleanField()
    engine = serializers.CharField()
    device = serializers.CharField()
    requested_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField()
    error = serializers.CharField(help_text="Why the watcher could not serve it ('' if well).")
    served_by = serializers.CharField(
        allow_null=True,
        help_text="The host whose `serve --watch` holds the target (runs its engines); null "
        "while no watcher holds it.",
    )
    lease_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When that host's lease ends unless it renews it."
    )


class ServingEngineRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    version_label = serializers.CharField()
    alias = serializers.CharField()
    role = serializers.CharField()
    engine = serializers.CharField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    ready_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()
    host = serializers.CharField(help_text="The host the engine runs on.")


class ServingUsageSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    requests = serializers.IntegerField()
    failures = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    ttft_p50_ms = serializers.FloatField(allow_null=True)


class ServingOverviewSerializer(serializers.Serializer):
    gateway_url = serializers.CharField()
    settings = ServingSettingsSerializer()
    target = ServingTargetSerializer(allow_null=True)
    engines = ServingEngineRowSerializer(many=True)
    usage = ServingUsageSerializer()
