from django.urls import path

from models_registry import pages

app_name = "models"

urlpatterns = [
    path("projects/<int:project_id>/", pages.version_list_page, name="list"),
    path("projects/<int:project_id>/propose/", pages.ProposalStartPage.as_view(), name="propose"),
    path("projects/<int:project_id>/proposals/", pages.proposal_list_page, name="proposals"),
    path("projects/<int:project_id>/audit/", pages.audit_log_page, name="audit"),
    path("projects/<int:project_id>/leaderboard/", pages.leaderboard_page, name="leaderboard"),
    path("projects/<int:project_id>/rounds/", pages.rounds_page, name="rounds"),
    path("projects/<int:project_id>/serving/", pages.serving_page, name="serving"),
    path("<int:version_id>/", pages.version_page, name="version"),
    path("<int:version_id>/report/", pages.round_report_page, name="report"),
    path("<int:version_id>/review/", pages.decision_page, name="decide"),
]
