"""Snapshot API: parse the request, call one access gate and one service, render."""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.access import access_project
from annotation.roles import Capability
from config.ranges import ranged_response
from rlhf.snapshots import downloads, selectors, services
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


class SnapshotFilesView(APIView):
    """What a ready snapshot's download route serves, with sizes and sha256."""

    @extend_schema(responses=s.SnapshotFilesSerializer)
    def get(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        return Response(downloads.snapshot_files(snapshot=snapshot))


class SnapshotDownloadView(APIView):
    """One file of a ready snapshot, or a folder as a tar, streamed; ``Range`` resumes it."""

    @extend_schema(
        parameters=[s.SnapshotDownloadQuerySerializer],
        responses={
            (200, "application/octet-stream"): bytes,
            (206, "application/octet-stream"): bytes,
        },
    )
    def get(self, request, snapshot_id: int):
        snapshot = selectors.snapshot_get(user=request.user, snapshot_id=snapshot_id)
        query = s.SnapshotDownloadQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        download = downloads.snapshot_download(snapshot=snapshot, file=query.validated_data["file"])
        response = ranged_response(
            request,
            size=download.size,
            read_range=download.read_range,
            content_type=download.content_type,
            filename=download.filename,
            etag=download.etag,
        )
        if request.method == "GET" and response.status_code in (200, 206):
            downloads.snapshot_download_sent(
                snapshot=snapshot,
                download=download,
                actor=request.user,
                sent=response.get("Content-Range", ""),
            )
        return response
