from django.urls import path

from rlhf.snapshots.api import views

urlpatterns = [
    path(
        "projects/<int:project_id>/snapshots/",
        views.SnapshotListView.as_view(),
        name="api-snapshots",
    ),
    path("snapshots/<int:snapshot_id>/", views.SnapshotDetailView.as_view(), name="api-snapshot"),
    path(
        "snapshots/<int:snapshot_id>/data-card/",
        views.DataCardView.as_view(),
        name="api-snapshot-card",
    ),
    path(
        "snapshots/<int:snapshot_id>/exports/",
        views.ExportListView.as_view(),
        name="api-snapshot-exports",
    ),
    path(
        "snapshots/<int:snapshot_id>/files/",
        views.SnapshotFilesView.as_view(),
        name="api-snapshot-files",
    ),
    path(
        "snapshots/<int:snapshot_id>/download/",
        views.SnapshotDownloadView.as_view(),
        name="api-snapshot-download",
    ),
]
