from django.urls import path
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser

from annotation.api import views
from config.api import CheckedJSONParser

# DRF's token view names its own parsers; the anonymous endpoint gets the checked JSON one.
obtain_auth_token = ObtainAuthToken.as_view(
    parser_classes=(FormParser, MultiPartParser, CheckedJSONParser)
)

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.MemberListView.as_view(), name="api-members"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/",
        views.MemberDetailView.as_view(),
        name="api-member",
    ),
    path("projects/<int:project_id>/imports/", views.ImportView.as_view(), name="api-imports"),
    path("projects/<int:project_id>/progress/", views.ProgressView.as_view(), name="api-progress"),
    path(
        "projects/<int:project_id>/settings/",
        views.ProjectSettingsView.as_view(),
        name="api-project-settings",
    ),
    path(
        "projects/<int:project_id>/tasks/next/", views.NextTaskView.as_view(), name="api-task-next"
    ),
    path("tasks/<int:task_id>/", views.TaskDetailView.as_view(), name="api-task"),
    path("tasks/<int:task_id>/labels/", views.LabelSubmitView.as_view(), name="api-label-submit"),
    path("tasks/<int:task_id>/skip/", views.SkipView.as_view(), name="api-task-skip"),
    path("tasks/<int:task_id>/heartbeat/", views.HeartbeatView.as_view(), name="api-heartbeat"),
    path("labels/", views.LabelListView.as_view(), name="api-labels"),
    path("labels/<int:label_id>/", views.LabelDetailView.as_view(), name="api-label"),
    path(
        "labels/<int:label_id>/revisions/",
        views.LabelRevisionsView.as_view(),
        name="api-label-revisions",
    ),
]
