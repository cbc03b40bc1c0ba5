"""Training-run API: parse the request, call one access gate and one service, render."""

from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.roles import Capability
from rlhf.runs import selectors, services, versions
from rlhf.runs.api import serializers as s
from rlhf.snapshots import selectors as snapshot_selectors


class TrainingRunListView(APIView):
    @extend_schema(responses=s.TrainingRunSummarySerializer(many=True))
    def get(self, request, project_id: int):
        runs = selectors.training_run_list(user=request.user, project_id=project_id)
        versions.annotate_runs(runs)
        return Response(s.TrainingRunSummarySerializer(runs, many=True).data)

    @extend_schema(
        request=s.TrainingRunLaunchSerializer, responses={202: s.TrainingRunDetailSerializer}
    )
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.TRAIN)
        data = s.TrainingRunLaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        snapshot = snapshot_selectors.snapshot_get(
            user=request.user, snapshot_id=values.pop("snapshot")
        )
        for field in ("base_model_run", "reward_model_run"):
            if values.get(field) is not None:
                values[field] = selectors.training_run_get(user=request.user, run_id=values[field])
        for field in ("base_model_version", "reward_model_version"):
            if values.get(field) is not None:
                values[field] = versions.version_get(version_id=values[field], user=request.user)
        run = services.training_run_launch(
            project=project, created_by=request.user, snapshot=snapshot, **values
        )
        return Response(s.TrainingRunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailView(APIView):
    @extend_schema(responses=s.TrainingRunDetailSerializer)
    def get(self, request, run_id: int):
        run = selectors.training_run_get(user=request.user, run_id=run_id)
        return Response(s.TrainingRunDetailSerializer(run).data)


class TrainingRunCancelView(APIView):
    @extend_schema(request=None, responses=s.TrainingRunDetailSerializer)
    def post(self, request, run_id: int):
        run = selectors.training_run_get(
            user=request.user, run_id=run_id, capability=Capability.TRAIN
        )
        run = services.training_run_cancel(run=run, cancelled_by=request.user)
        return Response(s.TrainingRunDetailSerializer(run).data)


class TrainingRunRetryView(APIView):
    @extend_schema(request=None, responses={202: s.TrainingRunDetailSerializer})
    def post(self, request, run_id: int):
        run = selectors.training_run_get(
            user=request.user, run_id=run_id, capability=Capability.TRAIN
        )
        run = services.training_run_retry(run=run, retried_by=request.user)
        return Response(s.TrainingRunDetailSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunMetricsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Only points with a larger id."),
            OpenApiParameter("name", str, many=True, description="Only these series."),
            OpenApiParameter("max_points", int, description="Thin each series to about this."),
        ],
        responses=s.MetricsSerializer,
    )
    def get(self, request, run_id: int):
        run = selectors.training_run_get(user=request.user, run_id=run_id)
        try:
            after = max(0, int(request.query_params.get("after") or 0))
            max_points = max(0, int(request.query_params.get("max_points") or 0))
        except ValueError:
            return Response(
                {"error": "invalid", "detail": "after and max_points are whole numbers"},
                status=status.HTTP_400_BAD_REQUEST,
            )
        metrics = selectors.training_run_metrics(
            run=run,
            after_id=after,
            names=request.query_params.getlist("name") or None,
            max_points=max_points,
        )
        return Response(metrics)


class TrainingRunCompareView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("run", int, many=True, description="2 to 8 runs of the project."),
            OpenApiParameter("max_points", int, description="Thin each series to about this."),
        ],
        responses=s.RunCompareSerializer,
    )
    def get(self, request, project_id: int):
        try:
            max_points = min(5000, max(2, int(request.query_params.get("max_points") or 500)))
        except ValueError:
            return Response(
                {
                    "error": "invalid",
                    "detail": "max_points is a whole number",
                    "field": "max_points",
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        compared = selectors.training_run_compare(
            user=request.user, project_id=project_id, run_ids=request.query_params.getlist("run")
        )
        curves = selectors.training_run_compare_curves(runs=compared["runs"], max_points=max_points)
        return Response({**curves, "config": compared["rows"]})


class TrainingRunArtifactView(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request, run_id: int, path: str):
        run = selectors.training_run_get(user=request.user, run_id=run_id)
        file = services.training_run_artifact_download(run=run, relative=path, actor=request.user)
        if file is None:
            raise Http404("No such artifact.")
        return FileResponse(open(file, "rb"), as_attachment=True, filename=file.name)


class TrainingMethodListView(APIView):
    @extend_schema(responses=s.TrainingMethodSerializer(many=True))
    def get(self, request):
        return Response(selectors.training_methods())
