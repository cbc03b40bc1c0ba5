from django.contrib.auth import views as auth_views
from django.urls import path

from frontend import account_views, label_views, quality_views, views

app_name = "frontend"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="frontend/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("labels/", label_views.my_labels, name="my-labels"),
    path("labels/<int:label_id>/", label_views.my_label, name="my-label"),
    path("account/", account_views.account, name="account"),
    path("invitations/<int:invitation_id>/", views.invitation_answer, name="invitation"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<int:project_id>/annotate/", views.annotate, name="annotate"),
    path("projects/<int:project_id>/explorer/", views.explorer, name="explorer"),
    path("projects/<int:project_id>/manage/", views.project_manage, name="project-manage"),
    path(
        "projects/<int:project_id>/quality/",
        quality_views.quality_dashboard,
        name="quality-dashboard",
    ),
    path("projects/<int:project_id>/review/", quality_views.review_queue, name="review-queue"),
    path("tasks/<int:task_id>/review/", quality_views.review_task, name="review-task"),
]
