"""Annotation API: parse the request, call one access gate and one service, render."""

import logging

from django.contrib.auth import get_user_model
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import importers, selectors, services
from annotation.access import (
    access_invitation,
    access_label,
    access_project,
    access_project_invitation,
    access_task,
    can_create_projects,
)
from annotation.api import serializers as s
from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import LabelSource
from annotation.opaque import task_id_from_ref, task_ref
from annotation.roles import Capability
from config.errors import Forbidden, ValidationFailed
from config.untrusted import int64_problem
from formats.peers import WRITERS as PEER_WRITERS
from formats.peers import peer_json_array

User = get_user_model()
logger = logging.getLogger(__name__)
UNSHOWABLE_TASKS_SKIPPED = 3
UNSHOWABLE_REASON = "could not be shown (a server error, reported in the log)"

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Retries with the same key return the stored result; another body is 422.",
)


class ProjectListView(APIView):
    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        projects = selectors.project_list_for_user(request.user)
        return Response(s.ProjectSerializer(projects, many=True).data)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        if not can_create_projects(request.user):
            raise Forbidden("only platform staff create projects", code="staff_only")
        data = s.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        project = services.project_create(
            created_by=request.user, lead_settings=fields.pop("settings", None), **fields
        )
        project.viewer_role = "admin"
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(APIView):
    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id)
        return Response(s.ProjectSerializer(project).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def patch(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.ProjectUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, **data.validated_data)
        return Response(s.ProjectSerializer(project).data)


class MemberListView(APIView):
    @extend_schema(responses=s.MemberSerializer(many=True))
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        rows = [
            {"user_id": m.user_id, "username": m.user.username, "role": m.role, "group": m.group}
            for m in project.memberships.select_related("user").order_by("user__username")
        ]
        return Response(s.MemberSerializer(rows, many=True).data)

    @extend_schema(
        request=s.MemberSerializer,
        responses={200: s.MemberSerializer, 202: s.InvitationCreatedSerializer},
        description=(
            "Invite a username or e-mail address (202, the same answer whether or not the "
            "account exists; a membership is created when the invitee accepts). A current "
            "member's role is changed at once (200). Platform staff add people directly (200)."
        ),
    )
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = s.MemberSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.member_add_or_invite(
            project=project,
            by=request.user,
            name=data.validated_data["username"],
            role=data.validated_data["role"],
        )
        if result.membership is None:
            return Response({"status": "invitation created"}, status=status.HTTP_202_ACCEPTED)
        membership = result.membership
        return Response(
            {"user_id": membership.user_id, "username": membership.user.username,
             "role": membership.role, "group": membership.group}
        )  # fmt: skip


class InvitationListView(APIView):
    @extend_schema(responses=s.InvitationSerializer(many=True))
    def get(self, request):
        return Response(
            s.InvitationSerializer(selectors.invitation_list_for_user(request.user), many=True).data
        )


class ProjectInvitationListView(APIView):
    @extend_schema(responses=s.ProjectInvitationSerializer(many=True))
    def get(self, request, project_id: int):
        """The project's invitations that can still be answered (pending, not expired)."""
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        rows = [
            selectors.invitation_view(i) for i in selectors.invitation_list_for_project(project)
        ]
        return Response(s.ProjectInvitationSerializer(rows, many=True).data)


class ProjectInvitationDetailView(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request, project_id: int, invitation_id: int):
        """Revoke a pending invitation: its invitee can no longer answer it."""
        invitation = access_project_invitation(request.user, project_id, invitation_id)
        services.invitation_revoke(invitation=invitation, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAnswerView(APIView):
    @extend_schema(request=s.InvitationAnswerSerializer, responses=s.InvitationSerializer)
    def post(self, request, invitation_id: int):
        invitation = access_invitation(request.user, invitation_id)
        data = s.InvitationAnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = services.invitation_answer(
            invitation=invitation,
            user=request.user,
            accept=data.validated_data["accept"],
        )
        return Response(
            {"id": invitation.pk, "project_id": invitation.project_id,
             "project_name": invitation.project.name, "role": invitation.role,
             "state": invitation.state}
        )  # fmt: skip


class MemberDetailView(APIView):
    @extend_schema(request=s.MemberUpdateSerializer, responses=s.MemberSerializer)
    def patch(self, request, project_id: int, user_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        membership = project.memberships.filter(user_id=user_id).select_related("user").first()
        if membership is None:
            raise Http404("No such member.")
        data = s.MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_group_set(
            membership=membership, group=data.validated_data["group"]
        )
        return Response(
            {"user_id": membership.user_id, "username": membership.user.username,
             "role": membership.role, "group": membership.group}
        )  # fmt: skip

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, user_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        user = project.memberships.filter(user_id=user_id).select_related("user").first()
        if user is None:
            raise Http404("No such member.")
        services.membership_remove(project=project, user=user.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImportView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=s.ImportRequestSerializer, responses={201: s.ImportBatchSerializer})
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        # Before request.data: parsing it would spool the whole upload to disk.
        importers.upload_size_check(request_bytes=importers.declared_length(request.META))
        data = s.ImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        importers.upload_size_check(file_bytes=upload.size)
        batch = importers.import_file(
            project=project,
            data=upload.read(),
            filename=upload.name or "upload",
            kind=data.validated_data["kind"],
            created_by=request.user,
            annotator_name=data.validated_data.get("annotator_name"),
            task_kinds=data.validated_data.get("task_kinds"),
        )
        return Response(s.ImportBatchSerializer(batch).data, status=status.HTTP_201_CREATED)


class LabelExportView(APIView):
    """Every label of the project's pairwise and ranking tasks in a peer tool's shape (a JSON
    array: Label Studio tasks with annotations, or Argilla records with responses), streamed
    task by task so a large project never builds the file in memory."""

    @extend_schema(
        parameters=[OpenApiParameter("tool", str, enum=list(PEER_WRITERS), required=True)],
        responses={200: OpenApiResponse(description="A JSON array, streamed.")},
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        query = s.LabelExportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        fmt = query.validated_data["tool"]
        data_audit_record(
            action=DataAuditAction.LABELS_EXPORTED,
            subject=f"project:{project.pk}",
            actor=request.user,
            project=project,
            details={"tool": fmt},
        )
        records = selectors.labels_as_peer_records(project=project)
        response = StreamingHttpResponse(
            peer_json_array(records, fmt), content_type="application/json"
        )
        name = f"{project.slug}-labels-{fmt.replace('_', '-')}.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ProgressView(APIView):
    @extend_schema(responses=s.ProgressSerializer)
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id)
        return Response(selectors.project_progress(project, user=request.user))


class ProjectSettingsView(APIView):
    """The annotation lead's settings (``services.project_settings``): gold checks,
    aggregation, flags, the label edit window and the rubric."""

    @extend_schema(responses={200: dict})
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(services.project_settings(project))

    @extend_schema(request=dict, responses={200: dict})
    def patch(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        return Response(services.project_settings_update(project=project, changes=request.data))


class NextTaskView(APIView):
    @extend_schema(
        request=s.NextTaskRequestSerializer,
        responses={200: s.TaskViewSerializer, 204: OpenApiResponse(description="No task left")},
    )
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.ANNOTATE)
        data = s.NextTaskRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        exclude = [task_id_from_ref(t) for t in data.validated_data.get("exclude", [])]
        # The lease is committed before the task is shown: a task that cannot be shown
        # would otherwise come back to its holder on every try. It is skipped (for this
        # annotator; the log says why) and the next one claimed.
        for attempt in range(UNSHOWABLE_TASKS_SKIPPED + 1):
            lease = services.task_claim_next(
                project=project, annotator=request.user, exclude_task_ids=exclude
            )
            if lease is None:
                return Response(status=status.HTTP_204_NO_CONTENT)
            try:
                return Response(selectors.task_view_for_annotator(lease))
            except Exception:
                if attempt == UNSHOWABLE_TASKS_SKIPPED:
                    raise
                logger.exception("task %s could not be shown; skipped", lease.task_id)
                services.task_skip(
                    task=lease.task, annotator=request.user, reason=UNSHOWABLE_REASON
                )
                exclude.append(lease.task_id)
        raise AssertionError("unreachable")  # pragma: no cover


class TaskDetailView(APIView):
    @extend_schema(responses=s.TaskViewSerializer)
    def get(self, request, task_id: int):
        task = access_task(request.user, task_id)
        lease = selectors.held_lease(task, request.user)
        if lease is None:
            raise Http404("No such task.")
        return Response(selectors.task_view_for_annotator(lease))


class LabelSubmitView(APIView):
    @extend_schema(
        request=s.LabelSubmitSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.LabelSerializer, 200: s.LabelSerializer},
    )
    def post(self, request, task_id: int):
        task = access_task(request.user, task_id)
        data = s.LabelSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.label_submit(
            task=task,
            annotator=request.user,
            payload=selectors.payload_from_annotator(task, data.validated_data["payload"]),
            flags=data.validated_data.get("flags"),
            duration_ms=data.validated_data.get("duration_ms"),
            source=LabelSource.UI if request.auth is None else LabelSource.API,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        response = Response(
            selectors.label_view_for_annotator(result.label), status=status.HTTP_201_CREATED
        )
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class SkipView(APIView):
    @extend_schema(request=s.SkipSerializer, responses=s.LeaseSerializer)
    def post(self, request, task_id: int):
        task = access_task(request.user, task_id)
        data = s.SkipSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lease = services.task_skip(
            task=task, annotator=request.user, reason=data.validated_data.get("reason", "")
        )
        return Response(
            {"task_id": task_ref(task.pk), "state": lease.state, "expires_at": lease.expires_at}
        )


class UndoView(APIView):
    @extend_schema(
        request=None,
        responses={200: s.TaskViewSerializer},
        description="Undo your last submit (the label is withdrawn) or skip of this task "
        "within TANDEM_UNDO_SECONDS; the task comes back to you. 409 with a code saying why "
        "not: nothing_to_undo, undo_window_closed, edit_window_closed, reviewed, task_closed, "
        "label_in_snapshot, task_full.",
    )
    def post(self, request, task_id: int):
        task = access_task(request.user, task_id, skipped=True)
        lease = services.task_undo(task=task, annotator=request.user)
        return Response(selectors.task_view_for_annotator(lease))


class HeartbeatView(APIView):
    @extend_schema(request=None, responses=s.LeaseSerializer)
    def post(self, request, task_id: int):
        task = access_task(request.user, task_id)
        lease = services.lease_heartbeat(task=task, annotator=request.user)
        return Response(
            {"task_id": task_ref(task.pk), "state": lease.state, "expires_at": lease.expires_at}
        )


class LabelListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("project", int, required=False)],
        responses=s.LabelSerializer(many=True),
    )
    def get(self, request):
        project_id = request.query_params.get("project")
        if project_id is not None:
            problem = int64_problem(project_id)
            if problem:
                raise ValidationFailed(f"project {problem}", field="project")
            access_project(request.user, project_id)
        labels = selectors.label_list_for_annotator(request.user, project_id=project_id)[:200]
        return Response(selectors.label_views_for_annotator(list(labels)))


class LabelDetailView(APIView):
    @extend_schema(responses=s.LabelSerializer)
    def get(self, request, label_id: int):
        label = access_label(request.user, label_id)
        return Response(selectors.label_view_for_annotator(label))

    @extend_schema(request=s.LabelEditSerializer, responses=s.LabelSerializer)
    def patch(self, request, label_id: int):
        label = access_label(request.user, label_id, for_edit=True)
        data = s.LabelEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = services.label_edit(
            label=label,
            editor=request.user,
            payload=selectors.payload_from_annotator(label.task, data.validated_data["payload"]),
            flags=data.validated_data.get("flags"),
        )
        return Response(selectors.label_view_for_annotator(label))


class LabelRevisionsView(APIView):
    @extend_schema(responses=s.RevisionSerializer(many=True))
    def get(self, request, label_id: int):
        label = access_label(request.user, label_id)
        revisions = selectors.label_revisions_for_annotator(label)
        return Response(s.RevisionSerializer(revisions, many=True).data)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(
            {"id": request.user.pk, "username": request.user.username,
             "is_staff": request.user.is_staff,
             "can_create_projects": can_create_projects(request.user)}
        )  # fmt: skip
