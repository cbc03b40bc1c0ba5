"""Snapshot API: parse the request, call one access gate and one service, render."""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.roles import Capability
from rlhf.snapshots import selectors, services
from rlhf.snapshots.api import serializers as s


class SnapshotListView(APIView):
    @extend_schema(responses=s.SnapshotSummarySerializer(many=True))
    def get(self, request, project_id: int):
        snapshots = selectors.snapshot_list(user=request.user, project_id=project_id)
        return Response(s.SnapshotSummarySerializer(snapshots, many=True).data)

    @extend_schema(request=s.SnapshotCreateSerializer, responses={202: s.SnapshotSummarySerializer})
    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.DATA)
        data = s.SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        snapshot = services.snapshot_create(
            project=project, created_by=request.user, **data.validated_data
        )
        return Response(s.SnapshotSummarySerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class SnapshotDetailView(APIView):
    @extend_schema(responses=s.SnapshotDetailSerializer)
    def get(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        return Response(s.SnapshotDetailSerializer(snapshot).data)


class DataCardView(APIView):
    @extend_schema(responses={(200, "text/markdown"): str})
    def get(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        return HttpResponse(snapshot.data_card, content_type="text/markdown; charset=utf-8")


class ExportListView(APIView):
    @extend_schema(responses=s.ExportSerializer(many=True))
    def get(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        return Response(
            s.ExportSerializer(selectors.snapshot_exports(snapshot=snapshot), many=True).data
        )

    @extend_schema(request=s.ExportCreateSerializer, responses={202: None})
    def post(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        data = s.ExportCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.snapshot_export_enqueue(
            snapshot=snapshot, actor=request.user, **data.validated_data
        )
        return Response({"name": data.validated_data["name"]}, status=status.HTTP_202_ACCEPTED)
