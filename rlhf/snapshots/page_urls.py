from django.urls import path

from rlhf.snapshots import pages

app_name = "rlhf-pages"

urlpatterns = [
    path("projects/<int:project_id>/snapshots/", pages.snapshot_list_page, name="snapshots"),
    path("snapshots/<int:snapshot_id>/", pages.snapshot_page, name="snapshot"),
]
