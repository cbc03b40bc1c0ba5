from django.urls import path

from rlhf.runs import pages

app_name = "runs"

urlpatterns = [
    path("projects/<int:project_id>/", pages.run_list_page, name="list"),
    path("projects/<int:project_id>/new/", pages.run_new_page, name="new"),
    path("projects/<int:project_id>/compare/", pages.run_compare_page, name="compare"),
    path("<int:run_id>/", pages.run_page, name="run"),
    path("<int:run_id>/cancel/", pages.run_action_page, {"action": "cancel"}, name="cancel"),
    path("<int:run_id>/retry/", pages.run_action_page, {"action": "retry"}, name="retry"),
]
