from django.urls import path

from rlhf.feedback import api

urlpatterns = [
    path(
        "tasks/<int:task_id>/reward-preference/",
        api.RewardPreferenceView.as_view(),
        name="api-task-reward-preference",
    ),
]
