"""Data explorer API: one access gate, one selector or service, render."""

from dataclasses import fields

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project, access_task
from annotation.explorer import selectors
from annotation.explorer.services import (
    BULK_ACTIONS,
    BULK_CAPABILITY,
    tasks_bulk_apply,
    tasks_bulk_apply_filtered,
)
from annotation.roles import Capability
from annotation.services.sealing import (
    MAX_REASON_CHARS,
    SEALABLE_TEXTS,
    text_seal,
    text_unseal,
)
from config.errors import ValidationFailed
from config.untrusted import int64_problem

FILTER_PARAMETERS = [
    OpenApiParameter("kind", str, description="pairwise, ranking, rubric or correction"),
    OpenApiParameter("status", str, description="open or done"),
    OpenApiParameter("agreement_min", float, description="0..1 (tasks with 2+ labels)"),
    OpenApiParameter("agreement_max", float),
    OpenApiParameter("annotator", str, description="a username: tasks this person labelled"),
    OpenApiParameter("flag", str, description="unsafe, personal_data, spam, or any"),
    OpenApiParameter("gold", str, description="true or false"),
    OpenApiParameter("review", str, description="requested, decided or none"),
    OpenApiParameter("created_from", str, description="YYYY-MM-DD, inclusive (UTC)"),
    OpenApiParameter("created_to", str, description="YYYY-MM-DD, inclusive (UTC)"),
    OpenApiParameter("q", str, description="text in the prompt"),
]


def _cursor(request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    problem = int64_problem(raw)
    if problem:
        raise ValidationFailed(f"{name} {problem}", field=name)
    return int(raw)


class ExplorerPageView(APIView):
    @extend_schema(
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter("after", int, description="next page: tasks older than this id"),
            OpenApiParameter("before", int, description="previous page: newer than this id"),
            OpenApiParameter("limit", int, description="1..200, default 50"),
        ],
        responses={200: OpenApiResponse(description="rows, next_after, prev_before, filters")},
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        filters = selectors.explorer_filters_parse(request.query_params)
        limit = _cursor(request, "limit")
        return Response(
            selectors.explorer_page(
                project,
                filters,
                after=_cursor(request, "after"),
                before=_cursor(request, "before"),
                limit=selectors.PAGE_SIZE if limit is None else limit,
            )
        )


class ExplorerCountView(APIView):
    @extend_schema(
        parameters=FILTER_PARAMETERS,
        responses={200: OpenApiResponse(description="count (capped at 10,000) and capped")},
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        filters = selectors.explorer_filters_parse(request.query_params)
        return Response(selectors.explorer_count(project, filters))


class ExplorerTaskView(APIView):
    @extend_schema(
        operation_id="projects_explorer_task_retrieve",
        responses={200: OpenApiResponse(description="The task, labels, history.")},
    )
    def get(self, request, project_id: int, task_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        task = access_task(request.user, task_id, capability=Capability.DATA)
        if task.project_id != project.pk:
            raise Http404("No such task.")
        return Response(selectors.explorer_task_view(task))


FILTER_NAMES = frozenset(f.name for f in fields(selectors.ExplorerFilters))


class BulkRequestSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    task_ids = serializers.ListField(
        child=serializers.IntegerField(), max_length=1000, required=False
    )
    filters = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=300),
        required=False,
        help_text="instead of task_ids: every task these explorer filters match (the same "
        "names as the table's query parameters); needs expected_count",
    )
    expected_count = serializers.IntegerField(
        required=False, help_text="with filters: the number of tasks the person confirmed"
    )
    priority = serializers.IntegerField(required=False)

    def validate(self, attrs):
        if ("task_ids" in attrs) == ("filters" in attrs):
            raise serializers.ValidationError(
                {"task_ids": "send either task_ids or filters (with expected_count)"}
            )
        if "filters" in attrs:
            unknown = sorted(set(attrs["filters"]) - FILTER_NAMES)
            if unknown:
                raise serializers.ValidationError(
                    {"filters": f"unknown filters {unknown}; known: {sorted(FILTER_NAMES)}"}
                )
            if "expected_count" not in attrs:
                raise serializers.ValidationError(
                    {"expected_count": "send the number of matching tasks you confirmed"}
                )
        return attrs


class ExplorerBulkView(APIView):
    @extend_schema(
        request=BulkRequestSerializer,
        responses={200: OpenApiResponse(description="action, changed, skipped (with reasons)")},
        description=(
            "reopen, set_priority and mark_gold need the manage capability (admins); "
            "send_to_adjudication the review capability. With filters instead of task_ids the "
            "action applies to every matching task (at most 1,000; 409 count_changed when the "
            "set no longer has expected_count tasks)."
        ),
    )
    def post(self, request, project_id: int):
        # The gate first, with the least capability any action needs (review), so a caller
        # who may do none of them learns nothing from how their body is judged; then the
        # action's own capability.
        access_project(request.user, project_id, capability=Capability.REVIEW)
        data = BulkRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = data.validated_data["action"]
        project = access_project(request.user, project_id, capability=BULK_CAPABILITY[action])
        if "filters" in data.validated_data:
            return Response(
                tasks_bulk_apply_filtered(
                    project=project,
                    by=request.user,
                    action=action,
                    filters=selectors.explorer_filters_parse(data.validated_data["filters"]),
                    expected_count=data.validated_data["expected_count"],
                    priority=data.validated_data.get("priority"),
                )
            )
        return Response(
            tasks_bulk_apply(
                project=project,
                by=request.user,
                action=action,
                task_ids=data.validated_data["task_ids"],
                priority=data.validated_data.get("priority"),
            )
        )


class SealRequestSerializer(serializers.Serializer):
    text = serializers.ChoiceField(choices=SEALABLE_TEXTS, help_text="which of the task's texts")
    response = serializers.IntegerField(
        required=False, help_text="with text=response: the response's id as the task view shows it"
    )
    reason = serializers.CharField(max_length=MAX_REASON_CHARS, help_text="why (audited)")

    def validate(self, attrs):
        if attrs["text"] == "response" and "response" not in attrs:
            raise serializers.ValidationError({"response": "name the response to seal"})
        return attrs


class ExplorerSealView(APIView):
    service = staticmethod(text_seal)

    @extend_schema(
        request=SealRequestSerializer,
        responses={200: OpenApiResponse(description="What the seal changed (the audit details).")},
        description=(
            "Seal a task's prompt or one of its responses as personal data (project admins): "
            "the clear text is kept only encrypted, every reader sees "
            "'[personal data removed]', open tasks showing it close, snapshots holding it are "
            "withdrawn (docs/security.md). 409 already_sealed."
        ),
    )
    def post(self, request, project_id: int, task_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        task = selectors.explorer_task_get(project, task_id)
        data = SealRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = selectors.explorer_seal_target(
            task, text=data.validated_data["text"], response=data.validated_data.get("response")
        )
        return Response(
            self.service(
                project=project,
                actor=request.user,
                reason=data.validated_data["reason"],
                **target,
            )
        )


class ExplorerUnsealView(ExplorerSealView):
    service = staticmethod(text_unseal)

    @extend_schema(
        request=SealRequestSerializer,
        responses={200: OpenApiResponse(description="What was restored (the audit details).")},
        description=(
            "Undo a seal made by mistake (project admins): the clear text comes back from its "
            "encrypted copy. Closed tasks stay closed and withdrawn snapshots withdrawn. "
            "409 not_sealed."
        ),
    )
    def post(self, request, project_id: int, task_id: int):
        return super().post(request, project_id, task_id)


EXPORTS = {
    "jsonl": (selectors.explorer_export_jsonl, "application/x-ndjson", "jsonl"),
    "csv": (selectors.explorer_export_csv, "text/csv; charset=utf-8", "csv"),
}


class ExplorerExportView(APIView):
    @extend_schema(
        parameters=[*FILTER_PARAMETERS, OpenApiParameter("as", str, description="jsonl or csv")],
        responses={200: OpenApiResponse(description="Every task that passes the filters.")},
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        filters = selectors.explorer_filters_parse(request.query_params)
        kind = request.query_params.get("as") or "jsonl"
        if kind not in EXPORTS:
            raise ValidationFailed("as must be jsonl or csv", field="as")
        produce, content_type, suffix = EXPORTS[kind]
        response = StreamingHttpResponse(produce(project, filters), content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-tasks.{suffix}"'
        return response
