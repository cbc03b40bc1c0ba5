"""Quality pages: the dashboard (charts drawn in the browser from the stored report), the
reviewer queue and the adjudication form. One access gate, one selector or service each."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.access import access_project
from annotation.models import TaskKind
from annotation.quality import selectors, services
from annotation.quality.access import access_task_for_review
from annotation.roles import Capability, role_can
from annotation.services import project_allowed_flags
from config.errors import Conflict, DomainError


@login_required
def quality_dashboard(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.DATA)
    return render(
        request,
        "frontend/quality_dashboard.html",
        {
            "project": project,
            "can_review": role_can(project.viewer_role, Capability.REVIEW),
            "can_manage": role_can(project.viewer_role, Capability.MANAGE),
            "flag_scores": selectors.annotator_flag_scores(project),
        },
    )


@login_required
def review_queue(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.REVIEW)
    return render(
        request,
        "frontend/review_queue.html",
        {"project": project, "rows": selectors.review_queue(project, limit=100)},
    )


def _decision_payload(kind: str, post) -> dict:
    if kind == TaskKind.PAIRWISE:
        payload = {"choice": post.get("choice", "")}
        if post.get("strength"):
            payload["strength"] = post["strength"]
        return payload
    if kind == TaskKind.RANKING:
        words = post.get("ranking", "").replace(",", " ").split()
        # isascii: "²".isdigit() is True, and int("²") raises.
        order = [int(x) for x in words if x.isascii() and x.isdigit()]
        return {"ranking": [[i] for i in order]}
    raise DomainError("adjudicate this kind of task through the API", code="unsupported_kind")


@login_required
@require_http_methods(["GET", "POST"])
def review_task(request, task_id: int):
    try:
        task = access_task_for_review(request.user, task_id)
    except Conflict as sealed:
        # Nothing of the task (sides, labels, texts) until it is not sealed for this viewer.
        return render(request, "frontend/review_task.html", {"sealed": sealed.message}, status=409)
    if request.method == "POST":
        try:
            services.adjudication_decide(
                task=task,
                reviewer=request.user,
                payload=selectors.payload_from_reviewer(
                    task, _decision_payload(task.kind, request.POST)
                ),
                reason=request.POST.get("reason", ""),
                # The form always judges flags: no box ticked means "no flag applies".
                flags=request.POST.getlist("flags"),
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("frontend:review-task", task_id=task.pk)
        messages.success(request, f"Decision on task {task.pk} recorded.")
        return redirect("frontend:review-queue", project_id=task.project_id)
    return render(
        request,
        "frontend/review_task.html",
        {
            "task": task,
            "view": selectors.review_task_view(task),
            "allowed_flags": project_allowed_flags(task.project),
        },
    )
