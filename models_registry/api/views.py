"""Registry API: parse the request, call one access gate and one service, render."""

from pathlib import Path

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.roles import Capability
from config.errors import ValidationFailed
from config.ranges import ranged_response
from config.safepaths import allowed_model_folder
from models_registry import (
    bundles,
    generation,
    proposals,
    review_selectors,
    review_settings,
    selectors,
    services,
)
from models_registry.access import (
    access_generation_job,
    access_model_version,
    access_model_version_export,
)
from models_registry.api import serializers as s
from models_registry.models import ModelVersion, VersionState
from models_registry.serving import selectors as serving_selectors
from models_registry.serving import services as serving_services
from rlhf.models import DatasetSnapshot, TrainingRun
from rlhf.runs.selectors import folder_refusal_for


def _allowed_folder(raw: str, project) -> Path:
    """Folders registered over HTTP follow the model-folder rule (``allowed_model_folder``);
    the CLI may register any path (its user already has the machine). The artifact root (a
    model root by default) holds every project's runs: a run's folder is allowed to its own
    project only."""
    return allowed_model_folder(raw, refuse=lambda folder: folder_refusal_for(folder, project))


def _project_object(model, pk: int, project, *, field: str):
    """The project's run or snapshot ``pk``; another project's (or none) is a 400 naming the
    field, as it would be if the id did not exist."""
    found = model.objects.filter(pk=pk, project=project).first()
    if found is None:
        raise ValidationFailed(
            f"{field}: no such {model._meta.verbose_name} in this project",
            code="invalid_reference",
            fields={field: "not one of this project's"},
        )
    return found


class VersionListView(APIView):
    @extend_schema(responses=s.ModelVersionSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        versions = selectors.model_version_list(
            project=project, kind=request.query_params.get("kind")
        )
        return Response(s.ModelVersionSerializer(versions, many=True).data)


class RegisterBaseView(APIView):
    @extend_schema(request=s.RegisterBaseSerializer, responses={201: s.ModelVersionSerializer})
    def post(self, request, project_id: int):
        # A base model is the root of every lineage and may become champion unreviewed.
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.RegisterBaseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        folder = data.validated_data.get("folder")
        version = services.model_version_register_base(
            project=project,
            registered_by=request.user,
            folder=_allowed_folder(folder, project) if folder else None,
            name=data.validated_data.get("name"),
            kind=data.validated_data["kind"],
        )
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class RegisterView(APIView):
    @extend_schema(request=s.RegisterSerializer, responses={201: s.ModelVersionSerializer})
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.TRAIN)
        data = s.RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        parent_id = fields.pop("parent_id", None)
        parent = (
            get_object_or_404(ModelVersion, pk=parent_id, project=project) if parent_id else None
        )
        for field, model in (("training_run", TrainingRun), ("dataset_snapshot", DatasetSnapshot)):
            ref = fields.pop(f"{field}_ref", None)
            if ref is not None:
                fields[field] = _project_object(model, ref, project, field=f"{field}_ref")
        version = services.model_version_register(
            project=project,
            folder=_allowed_folder(fields.pop("folder"), project),
            registered_by=request.user,
            launched_by=request.user,
            parent=parent,
            **fields,
        )
        return Response(s.ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class VersionDetailView(APIView):
    @extend_schema(responses=s.ModelVersionDetailSerializer)
    def get(self, request, version_id: int):
        version = access_model_version(request.user, version_id)
        context = {
            "ancestors": selectors.model_version_ancestors(version),
            "review": selectors.review_summary(candidate=version).as_evidence(),
        }
        return Response(s.ModelVersionDetailSerializer(version, context=context).data)


class TransitionView(APIView):
    @extend_schema(request=s.TransitionSerializer, responses=s.ModelVersionSerializer)
    def post(self, request, version_id: int):
        data = s.TransitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        to_state = data.validated_data["to_state"]
        # Putting a candidate up for review is the trainer's call; decisions are reviewers'.
        capability = Capability.TRAIN if to_state == VersionState.IN_REVIEW else Capability.REVIEW
        version = access_model_version(request.user, version_id, capability=capability)
        arguments = {
            "version": version,
            "actor": request.user,
            "reason": data.validated_data["reason"],
            "evidence": data.validated_data.get("evidence"),
        }
        if to_state == VersionState.APPROVED:
            version = services.model_version_approve(
                **arguments, without_evaluation=data.validated_data["without_evaluation"]
            )
        else:
            version = services.model_version_transition(to_state=to_state, **arguments)
        return Response(s.ModelVersionSerializer(version).data)


class VersionAuditView(APIView):
    @extend_schema(responses=s.AuditEventSerializer(many=True))
    def get(self, request, version_id: int):
        version = access_model_version(request.user, version_id)
        events = selectors.audit_events(version=version)
        return Response(s.AuditEventSerializer(events, many=True).data)


class ProjectAuditView(APIView):
    """Read-only by construction: no other method exists on this endpoint (405)."""

    @extend_schema(responses=s.AuditEventSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(
            s.AuditEventSerializer(selectors.audit_events(project=project), many=True).data
        )


class AliasListView(APIView):
    @extend_schema(responses=s.AliasSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(s.AliasSerializer(selectors.alias_list(project=project), many=True).data)


class AliasDetailView(APIView):
    @extend_schema(request=s.AliasMoveSerializer, responses=s.AliasSerializer)
    def put(self, request, project_id: int, name: str):
        project = access_project(request.user, project_id, capability=Capability.REVIEW)
        data = s.AliasMoveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        override = data.validated_data["override"]
        if override:
            # Overriding the review is a project admin's call, never a reviewer's.
            access_project(request.user, project_id, capability=Capability.MANAGE)
        version = access_model_version(
            request.user, data.validated_data["version_id"], capability=Capability.REVIEW
        )
        alias = services.alias_set(
            project=project,
            name=name,
            version=version,
            actor=request.user,
            reason=data.validated_data["reason"],
            override=override,
        )
        return Response(s.AliasSerializer(alias).data)


class AliasRollbackView(APIView):
    @extend_schema(request=s.RollbackSerializer, responses=s.AliasSerializer)
    def post(self, request, project_id: int, name: str):
        project = access_project(request.user, project_id, capability=Capability.REVIEW)
        data = s.RollbackSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        alias = services.alias_rollback(
            project=project, name=name, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(s.AliasSerializer(alias).data)


class LeaderboardView(APIView):
    @extend_schema(responses=s.LeaderboardRowSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        rows = [
            {
                **{k: v for k, v in vars(item["row"]).items() if k != "version"},
                "version_id": item["version"].pk,
                "label": item["version"].label,
            }
            for item in selectors.leaderboard(project=project)
        ]
        return Response(s.LeaderboardRowSerializer(rows, many=True).data)


class GenerateView(APIView):
    @extend_schema(request=s.GenerateSerializer, responses={202: s.GenerationJobSerializer})
    def post(self, request, version_id: int):
        version = access_model_version(request.user, version_id, capability=Capability.TRAIN)
        data = s.GenerateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = generation.generation_job_create(
            version=version,
            prompt_ids=data.validated_data["prompt_ids"],
            config=data.validated_data.get("config"),
            created_by=request.user,
        )
        return Response(s.GenerationJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class BundleView(APIView):
    """A version's export bundle: POST builds it (in a worker), GET downloads it as a tar
    (``Range`` resumes it). ``access_model_version_export`` decides who may do either."""

    @extend_schema(
        parameters=[s.BundleRequestSerializer],
        responses={(200, "application/x-tar"): bytes, (206, "application/x-tar"): bytes},
    )
    def get(self, request, version_id: int):
        version = access_model_version_export(request.user, version_id)
        query = s.BundleRequestSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        current, layout, etag = bundles.model_version_bundle_download(
            version=version, adapter_only=query.validated_data["adapter_only"]
        )
        response = ranged_response(
            request,
            size=layout.size,
            read_range=layout.read_range,
            content_type="application/x-tar",
            filename=f"{current.name}.tar",
            etag=etag,
        )
        if request.method == "GET" and response.status_code in (200, 206):
            bundles.model_version_bundle_sent(
                version=version,
                bundle=current,
                etag=etag,
                size=layout.size,
                actor=request.user,
                sent=response.get("Content-Range", ""),
            )
        return response

    @extend_schema(
        request=s.BundleRequestSerializer,
        responses={200: s.BundleStatusSerializer, 202: s.BundleStatusSerializer},
    )
    def post(self, request, version_id: int):
        version = access_model_version_export(request.user, version_id)
        data = s.BundleRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        current = bundles.model_version_bundle_request(
            version=version, adapter_only=data.validated_data["adapter_only"]
        )
        body = {
            "status": current.status,
            "mode": current.mode,
            "name": current.name,
            "error": current.error,
        }
        ready = current.status == "ready"
        return Response(body, status=status.HTTP_200_OK if ready else status.HTTP_202_ACCEPTED)


class ProposalListView(APIView):
    """Model-proposed data: GET lists the project's proposals (newest first), POST queues the
    champion (or ``version_id``) proposing prompt variants or corrections."""

    @extend_schema(responses=s.ProposalSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        rows = proposals.proposal_list(project=project)
        return Response(s.ProposalSerializer(rows, many=True).data)

    @extend_schema(request=s.ProposalRequestSerializer, responses={202: s.GenerationJobSerializer})
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.TRAIN)
        data = s.ProposalRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        version = None
        if "version_id" in values:
            version = _project_object(
                ModelVersion, values["version_id"], project, field="version_id"
            )
        job = proposals.proposal_job_create(
            project=project,
            kind=values["kind"],
            version=version,
            prompt_ids=values.get("prompt_ids"),
            response_ids=values.get("response_ids"),
            variants=values["variants"],
            limit=values["limit"],
            config=values.get("config"),
            created_by=request.user,
        )
        return Response(s.GenerationJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationJobView(APIView):
    @extend_schema(responses=s.GenerationJobSerializer)
    def get(self, request, job_id: int):
        job = access_generation_job(request.user, job_id)
        return Response(s.GenerationJobSerializer(job).data)


class ReviewSettingsView(APIView):
    """The approval thresholds and loop round sizes (``Project.options``), and the pinned set."""

    @extend_schema(responses=s.ReviewSettingsSerializer)
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(review_selectors.review_settings(project))

    @extend_schema(request=s.ReviewSettingsSerializer, responses=s.ReviewSettingsSerializer)
    def patch(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.ReviewSettingsSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return Response(
            review_settings.review_settings_update(project=project, **data.validated_data)
        )


class EvalPromptsView(APIView):
    """The project's pinned evaluation prompts: list them, or pin more."""

    @extend_schema(responses=s.ReviewSettingsSerializer)
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(review_selectors.review_settings(project))

    @extend_schema(request=s.EvalPromptsSerializer, responses=s.ReviewSettingsSerializer)
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.EvalPromptsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review_settings.eval_prompts_pin(
            project=project,
            prompt_ids=data.validated_data.get("prompt_ids"),
            conversations=data.validated_data.get("prompts"),
            replace=data.validated_data["replace"],
        )
        project.refresh_from_db()
        return Response(review_selectors.review_settings(project))


def _serving_overview(request, project) -> dict:
    overview = serving_selectors.serving_overview(project=project)
    overview["gateway_url"] = request.build_absolute_uri(overview.pop("gateway_path"))
    return s.ServingOverviewSerializer(overview).data


class ServingView(APIView):
    """The project's serving: settings, target, engines now, usage of the last 24 h. Admins."""

    @extend_schema(responses=s.ServingOverviewSerializer)
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        return Response(_serving_overview(request, project))

    @extend_schema(request=s.ServingSettingsSerializer, responses=s.ServingOverviewSerializer)
    def patch(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.ServingSettingsSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if fields.get("canary_version") is not None:
            fields["canary_version"] = _project_policy(project, fields["canary_version"])
        serving_services.serving_settings_update(project=project, actor=request.user, **fields)
        return Response(_serving_overview(request, project))


def _project_policy(project, version_id: int) -> ModelVersion:
    """A version id from a request: another project's (or none) is refused as one field."""
    version = ModelVersion.objects.filter(pk=version_id, project=project).first()
    if version is None:
        raise ValidationFailed(
            "invalid serving settings",
            code="invalid",
            fields={"canary_version": "a policy version of this project"},
        )
    return version


class ServingTargetView(APIView):
    """Start serving (an alias, or a pinned version) or stop it; ``manage.py serve --watch``
    follows within seconds. Admins; audited."""

    @extend_schema(request=s.ServingTargetRequestSerializer, responses=s.ServingOverviewSerializer)
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.ServingTargetRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if fields["version"] is not None:
            version = ModelVersion.objects.filter(pk=fields["version"], project=project).first()
            if version is None:
                raise ValidationFailed(
                    "nothing to serve",
                    code="invalid",
                    fields={"version": "a policy version of this project"},
                )
            fields["version"] = version
        elif not fields["alias"]:
            fields["alias"] = "champion"
        serving_services.serving_target_start(project=project, actor=request.user, **fields)
        return Response(_serving_overview(request, project), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ServingOverviewSerializer)
    def delete(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        serving_services.serving_target_stop(project=project, actor=request.user)
        return Response(_serving_overview(request, project))
