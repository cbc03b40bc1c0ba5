from django.urls import path

from rlhf.api import run_views, views

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
]

# Training runs (rlhf.api.run_views).
urlpatterns += [
    path("training/methods/", run_views.TrainingMethodListView.as_view(), name="api-methods"),
    path(
        "projects/<int:project_id>/runs/",
        run_views.TrainingRunListView.as_view(),
        name="api-runs",
    ),
    path("runs/<int:run_id>/", run_views.TrainingRunDetailView.as_view(), name="api-run"),
    path(
        "runs/<int:run_id>/cancel/",
        run_views.TrainingRunCancelView.as_view(),
        name="api-run-cancel",
    ),
    path(
        "runs/<int:run_id>/retry/", run_views.TrainingRunRetryView.as_view(), name="api-run-retry"
    ),
    path(
        "runs/<int:run_id>/metrics/",
        run_views.TrainingRunMetricsView.as_view(),
        name="api-run-metrics",
    ),
    path(
        "runs/<int:run_id>/artifacts/<path:path>",
        run_views.TrainingRunArtifactView.as_view(),
        name="api-run-artifact",
    ),
]
