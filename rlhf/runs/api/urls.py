from django.urls import path

from rlhf.runs.api import views

urlpatterns = [
    path("training/methods/", views.TrainingMethodListView.as_view(), name="api-methods"),
    path(
        "projects/<int:project_id>/runs/",
        views.TrainingRunListView.as_view(),
        name="api-runs",
    ),
    path(
        "projects/<int:project_id>/runs/compare/",
        views.TrainingRunCompareView.as_view(),
        name="api-runs-compare",
    ),
    path("runs/<int:run_id>/", views.TrainingRunDetailView.as_view(), name="api-run"),
    path(
        "runs/<int:run_id>/cancel/",
        views.TrainingRunCancelView.as_view(),
        name="api-run-cancel",
    ),
    path("runs/<int:run_id>/retry/", views.TrainingRunRetryView.as_view(), name="api-run-retry"),
    path(
        "runs/<int:run_id>/metrics/",
        views.TrainingRunMetricsView.as_view(),
        name="api-run-metrics",
    ),
    path(
        "runs/<int:run_id>/artifacts/<path:path>",
        views.TrainingRunArtifactView.as_view(),
        name="api-run-artifact",
    ),
]
