from django.urls import path

from annotation.quality import api

urlpatterns = [
    path("projects/<int:project_id>/quality/", api.QualityReportView.as_view(), name="api-quality"),
    path(
        "projects/<int:project_id>/quality/refresh/",
        api.QualityRefreshView.as_view(),
        name="api-quality-refresh",
    ),
    path(
        "projects/<int:project_id>/quality/annotators/<int:user_id>/reinstate/",
        api.AnnotatorReinstateView.as_view(),
        name="api-quality-reinstate",
    ),
    path(
        "projects/<int:project_id>/review/queue/",
        api.ReviewQueueView.as_view(),
        name="api-review-queue",
    ),
    path("projects/<int:project_id>/gold/", api.GoldListView.as_view(), name="api-gold"),
    path(
        "projects/<int:project_id>/gold/promote/",
        api.GoldPromoteView.as_view(),
        name="api-gold-promote",
    ),
    path(
        "projects/<int:project_id>/final-labels/",
        api.FinalLabelsView.as_view(),
        name="api-final-labels",
    ),
    path("tasks/<int:task_id>/review/", api.ReviewTaskView.as_view(), name="api-review-task"),
    path("tasks/<int:task_id>/gold/", api.GoldTaskView.as_view(), name="api-task-gold"),
]
