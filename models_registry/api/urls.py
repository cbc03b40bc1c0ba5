from django.urls import path

from models_registry.api import views

urlpatterns = [
    path("projects/<int:project_id>/models/", views.VersionListView.as_view(), name="api-models"),
    path(
        "projects/<int:project_id>/models/base/",
        views.RegisterBaseView.as_view(),
        name="api-model-register-base",
    ),
    path(
        "projects/<int:project_id>/models/register/",
        views.RegisterView.as_view(),
        name="api-model-register",
    ),
    path(
        "projects/<int:project_id>/models/audit/",
        views.ProjectAuditView.as_view(),
        name="api-model-audit",
    ),
    path(
        "projects/<int:project_id>/models/aliases/",
        views.AliasListView.as_view(),
        name="api-model-aliases",
    ),
    path(
        "projects/<int:project_id>/models/aliases/<slug:name>/",
        views.AliasDetailView.as_view(),
        name="api-model-alias",
    ),
    path(
        "projects/<int:project_id>/models/aliases/<slug:name>/rollback/",
        views.AliasRollbackView.as_view(),
        name="api-model-alias-rollback",
    ),
    path(
        "projects/<int:project_id>/models/leaderboard/",
        views.LeaderboardView.as_view(),
        name="api-model-leaderboard",
    ),
    path(
        "projects/<int:project_id>/models/review-settings/",
        views.ReviewSettingsView.as_view(),
        name="api-review-settings",
    ),
    path(
        "projects/<int:project_id>/models/eval-prompts/",
        views.EvalPromptsView.as_view(),
        name="api-eval-prompts",
    ),
    path(
        "projects/<int:project_id>/proposals/",
        views.ProposalListView.as_view(),
        name="api-proposals",
    ),
    path(
        "projects/<int:project_id>/serving/",
        views.ServingView.as_view(),
        name="api-serving",
    ),
    path(
        "projects/<int:project_id>/serving/target/",
        views.ServingTargetView.as_view(),
        name="api-serving-target",
    ),
    path("models/<int:version_id>/", views.VersionDetailView.as_view(), name="api-model"),
    path(
        "models/<int:version_id>/transition/",
        views.TransitionView.as_view(),
        name="api-model-transition",
    ),
    path(
        "models/<int:version_id>/audit/",
        views.VersionAuditView.as_view(),
        name="api-model-version-audit",
    ),
    path(
        "models/<int:version_id>/generate/", views.GenerateView.as_view(), name="api-model-generate"
    ),
    path("models/<int:version_id>/bundle/", views.BundleView.as_view(), name="api-model-bundle"),
    path(
        "generation-jobs/<int:job_id>/",
        views.GenerationJobView.as_view(),
        name="api-generation-job",
    ),
]
