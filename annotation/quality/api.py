"""Quality API: parse, call one access gate and one service or selector, render."""

import logging

from django.contrib.auth import get_user_model
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.models import TaskKind
from annotation.quality import selectors, services
from annotation.quality.access import access_task_for, access_task_for_review
from annotation.quality.aggregation import (
    DEFAULT_MIN_AGREEMENT,
    POLICIES,
    POLICY_MAJORITY,
    AggregationConfig,
)
from annotation.roles import Capability
from config.api import CheckedJSONField
from config.errors import ValidationFailed
from config.untrusted import int64_problem

logger = logging.getLogger(__name__)

User = get_user_model()


class AdjudicationSerializer(serializers.Serializer):
    payload = CheckedJSONField(
        help_text="As an annotator sends it, e.g. {'choice': 'B'}, naming responses by the "
        "ids the review view shows (task item refs; response ids are accepted too).",
    )
    reason = serializers.CharField(max_length=5_000)
    flags = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The content flags the reviewer found (unsafe, personal_data, spam): the "
        "truth annotators' flags are scored against. Left out: flags not judged.",
    )


class GoldSerializer(serializers.Serializer):
    payload = CheckedJSONField(
        help_text="The expected answer, as an annotator sends it, naming responses by their "
        "response ids (leads see them; annotators see task item ids instead)."
    )


class PromoteSerializer(serializers.Serializer):
    min_labels = serializers.IntegerField(min_value=2, max_value=50, default=3)
    limit = serializers.IntegerField(min_value=1, max_value=10_000, default=100)


class QualityReportView(APIView):
    @extend_schema(
        responses={200: OpenApiResponse(description="The project's quality report (JSON).")}
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        text = selectors.quality_report_json(project)
        if text is None:
            return Response({"error": "not_computed", "detail": "No report yet."}, status=404)
        # The stored JSON goes out as it is: decoding and re-encoding it is most of the cost.
        return HttpResponse(text, content_type="application/json")


class QualityRefreshView(APIView):
    @extend_schema(
        responses={200: OpenApiResponse(description="When computed; whether a refresh waits.")}
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        return Response(selectors.quality_refresh_status(project))

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter("full", int, description="1: rebuild everything from the labels"),
            OpenApiParameter(
                "queue", int, description="Accepted for older clients: every refresh is queued."
            ),
        ],
        responses={
            200: OpenApiResponse(description="Queued for a worker; the refresh status."),
            503: OpenApiResponse(description="The job queue is unavailable."),
        },
    )
    def post(self, request, project_id: int):
        """Queue a refresh (changed tasks) or, with ``full=1``, a rebuild from every label.
        Neither runs in this request: a rebuild reads every label of the project."""
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        full = request.query_params.get("full") == "1"
        try:
            if full:
                services.quality_request_recompute(project_id=project.pk)
            else:
                services.quality_request_refresh(project_id=project.pk)
        except Exception:
            # Logged; the request cleared its waiting flag, so pressing again retries.
            logger.exception("could not enqueue a quality refresh for project %s", project.pk)
            return Response(
                {"error": "queue_unavailable", "detail": "The job queue is unavailable."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        state = selectors.quality_refresh_status(project)
        return Response({**state, "queued": "recompute" if full else "refresh"})


def _int_param(request, name: str, default: int) -> int:
    """A whole-number query parameter; anything else is a 400 (it was a 500: ``?offset=null``)."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    problem = int64_problem(raw)
    if problem:  # "²" and numbers past 64 bits were 500s too
        raise ValidationFailed(f"{name} {problem}", field=name)
    return int(raw)


class ReviewQueueView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses={200: OpenApiResponse(description="Tasks, lowest agreement first.")},
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.REVIEW)
        limit = min(max(_int_param(request, "limit", 50), 1), 500)
        offset = max(_int_param(request, "offset", 0), 0)
        return Response(selectors.review_queue(project, limit=limit, offset=offset))


class ReviewTaskView(APIView):
    @extend_schema(
        responses={
            200: OpenApiResponse(description="The task and all its labels."),
            409: OpenApiResponse(description="Sealed: open, leased by you, or your label."),
        }
    )
    def get(self, request, task_id: int):
        task = access_task_for_review(request.user, task_id)
        return Response(selectors.review_task_view(task))

    @extend_schema(request=AdjudicationSerializer, responses={201: OpenApiResponse()})
    def post(self, request, task_id: int):
        task = access_task_for_review(request.user, task_id)
        data = AdjudicationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decision = dict(data.validated_data)
        decision["payload"] = selectors.payload_from_reviewer(task, decision["payload"])
        services.adjudication_decide(task=task, reviewer=request.user, **decision)
        return Response(selectors.review_task_view(task), status=status.HTTP_201_CREATED)


class GoldTaskView(APIView):
    @extend_schema(request=GoldSerializer, responses={201: OpenApiResponse()})
    def post(self, request, task_id: int):
        task = access_task_for(request.user, task_id, capability=Capability.MANAGE)
        data = GoldSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        gold = services.gold_mark(
            task=task, payload=data.validated_data["payload"], by=request.user
        )
        return Response(
            {"task_id": task.pk, "expected": gold.expected, "source": gold.source},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, task_id: int):
        task = access_task_for(request.user, task_id, capability=Capability.MANAGE)
        services.gold_unmark(task=task)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GoldListView(APIView):
    @extend_schema(responses={200: OpenApiResponse(description="The project's gold tasks.")})
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        return Response(selectors.gold_tasks(project))


class GoldPromoteView(APIView):
    @extend_schema(request=PromoteSerializer, responses={200: OpenApiResponse()})
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        data = PromoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        promoted = services.gold_promote_unanimous(
            project=project, by=request.user, **data.validated_data
        )
        return Response({"promoted": promoted})


class AnnotatorReinstateView(APIView):
    @extend_schema(request=None, responses={200: OpenApiResponse()})
    def post(self, request, project_id: int, user_id: int):
        project = access_project(request.user, project_id, capability=Capability.MANAGE)
        user = User.objects.filter(pk=user_id, memberships__project=project).first()
        if user is None:
            raise Http404("No such member.")
        services.annotator_reinstate(project=project, annotator=user)
        return Response({"user_id": user.pk, "paused": False})


FINAL_LABELS_PAGE = 1_000
FINAL_LABELS_MAX_PAGE = 5_000


class FinalLabelsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("policy", str, enum=list(POLICIES)),
            OpenApiParameter("kind", str, enum=list(TaskKind.values)),
            OpenApiParameter("threshold", float),
            OpenApiParameter("min_labels", int),
            OpenApiParameter("exclude_failing_gold", bool),
            OpenApiParameter("after", int, description="The previous page's next_after."),
            OpenApiParameter(
                "limit",
                int,
                description=f"Tasks per page (default {FINAL_LABELS_PAGE}, "
                f"at most {FINAL_LABELS_MAX_PAGE}).",
            ),
        ],
        responses={
            200: OpenApiResponse(
                description="One decision per task, with provenance, a page at a time: "
                "next_after is the cursor of the next page (null on the last)."
            )
        },
    )
    def get(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        q = request.query_params
        limit = min(max(_int_param(request, "limit", FINAL_LABELS_PAGE), 1), FINAL_LABELS_MAX_PAGE)
        after = max(_int_param(request, "after", 0), 0)
        try:
            config = AggregationConfig(
                policy=q.get("policy", POLICY_MAJORITY),
                min_agreement=float(q.get("threshold", DEFAULT_MIN_AGREEMENT)),
                min_labels=int(q.get("min_labels", 1)),
            )
        except ValueError as exc:
            raise serializers.ValidationError({"policy": str(exc)}) from exc
        kind = q.get("kind", TaskKind.PAIRWISE)
        if kind not in TaskKind.values:
            raise serializers.ValidationError({"kind": "unknown task kind"})
        excluded = (
            selectors.annotators_failing_gold(project)
            if q.get("exclude_failing_gold") in ("1", "true")
            else set()
        )
        try:
            page = selectors.final_labels_page(
                project,
                config=config,
                kind=kind,
                exclude_annotators=excluded,
                after=after,
                limit=limit,
                sealed_for=request.user,
            )
        except ValueError as exc:
            raise serializers.ValidationError({"policy": str(exc)}) from exc
        # "threshold" is the query parameter's name for min_agreement; the answer keeps it.
        config_data = {**config.as_dict(), "threshold": config.min_agreement}
        return Response({"config": config_data, "excluded_annotators": sorted(excluded),
                         "tasks": page["tasks"], "next_after": page["next_after"],
                         "limit": limit})  # fmt: skip
