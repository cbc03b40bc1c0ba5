from django.urls import path

from rlhf import run_pages

app_name = "runs"

urlpatterns = [
    path("projects/<int:project_id>/", run_pages.run_list_page, name="list"),
    path("projects/<int:project_id>/new/", run_pages.run_new_page, name="new"),
    path("<int:run_id>/", run_pages.run_page, name="run"),
    path("<int:run_id>/cancel/", run_pages.run_action_page, {"action": "cancel"}, name="cancel"),
    path("<int:run_id>/retry/", run_pages.run_action_page, {"action": "retry"}, name="retry"),
]
