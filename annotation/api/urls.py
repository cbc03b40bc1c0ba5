from django.urls import path

from annotation.api import erasure, tokens, views

urlpatterns = [
    path("auth/token/", tokens.ObtainTokenView.as_view(), name="api-token"),
    path("tokens/", tokens.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", tokens.TokenDetailView.as_view(), name="api-token-detail"),
    path("me/", views.MeView.as_view(), name="api-me"),
    path("me/erase/", erasure.OwnErasureView.as_view(), name="api-me-erase"),
    path("users/<int:user_id>/erase/", erasure.UserEraseView.as_view(), name="api-user-erase"),
    path("projects/", views.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", views.ProjectDetailView.as_view(), name="api-project"),
    path("projects/<int:project_id>/members/", views.MemberListView.as_view(), name="api-members"),
    path(
        "projects/<int:project_id>/members/<int:user_id>/",
        views.MemberDetailView.as_view(),
        name="api-member",
    ),
    path(
        "projects/<int:project_id>/invitations/",
        views.ProjectInvitationListView.as_view(),
        name="api-project-invitations",
    ),
    path(
        "projects/<int:project_id>/invitations/<int:invitation_id>/",
        views.ProjectInvitationDetailView.as_view(),
        name="api-project-invitation",
    ),
    path("invitations/", views.InvitationListView.as_view(), name="api-invitations"),
    path(
        "invitations/<int:invitation_id>/",
        views.InvitationAnswerView.as_view(),
        name="api-invitation",
    ),
    path("projects/<int:project_id>/imports/", views.ImportView.as_view(), name="api-imports"),
    path(
        "projects/<int:project_id>/labels/export/",
        views.LabelExportView.as_view(),
        name="api-labels-export",
    ),
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
    path("tasks/<int:task_id>/undo/", views.UndoView.as_view(), name="api-task-undo"),
    path("tasks/<int:task_id>/heartbeat/", views.HeartbeatView.as_view(), name="api-heartbeat"),
    path("labels/", views.LabelListView.as_view(), name="api-labels"),
    path("labels/<int:label_id>/", views.LabelDetailView.as_view(), name="api-label"),
    path(
        "labels/<int:label_id>/revisions/",
        views.LabelRevisionsView.as_view(),
        name="api-label-revisions",
    ),
]
