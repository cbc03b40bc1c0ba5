from django.urls import path

from annotation.explorer import api

urlpatterns = [
    path(
        "projects/<int:project_id>/explorer/tasks/",
        api.ExplorerPageView.as_view(),
        name="api-explorer-tasks",
    ),
    path(
        "projects/<int:project_id>/explorer/count/",
        api.ExplorerCountView.as_view(),
        name="api-explorer-count",
    ),
    path(
        "projects/<int:project_id>/explorer/tasks/<int:task_id>/",
        api.ExplorerTaskView.as_view(),
        name="api-explorer-task",
    ),
    path(
        "projects/<int:project_id>/explorer/tasks/<int:task_id>/seal/",
        api.ExplorerSealView.as_view(),
        name="api-explorer-task-seal",
    ),
    path(
        "projects/<int:project_id>/explorer/tasks/<int:task_id>/unseal/",
        api.ExplorerUnsealView.as_view(),
        name="api-explorer-task-unseal",
    ),
    path(
        "projects/<int:project_id>/explorer/bulk/",
        api.ExplorerBulkView.as_view(),
        name="api-explorer-bulk",
    ),
    path(
        "projects/<int:project_id>/explorer/export/",
        api.ExplorerExportView.as_view(),
        name="api-explorer-export",
    ),
]
