"""Quality pages: the dashboard (charts drawn in the browser from the stored report), the
reviewer queue and the adjudication form. One access gate, one selector or service each."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation.access import access_project
from annotation.models import TaskKind
from annotation.opaque import item_ref
from annotation.quality import selectors, services
from annotation.quality.access import access_task_for_review
from annotation.rendering import markdown_to_safe_html
from annotation.roles import Capability, role_can
from annotation.services import project_allowed_flags
from config.errors import Conflict, DomainError, ValidationFailed
from config.untrusted import int64_problem, json_value_problem
from rlhf.feedback.selectors import reward_agreement_by_week


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
            # Without a stored report the page says so instead of asking the API for one
            # (whose 404 the browser would log as an error).
            "has_report": selectors.quality_report_computed_at(project) is not None,
            "reward_agreement": reward_agreement_by_week(project=project),
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


def _decision_payload(task, post) -> dict:
    """The form's decision as a client payload (``annotation.labels`` checks it in the
    service): pairwise outcome and strength, ranking tiers (the control's JSON), rubric
    scores (one radio group per response and dimension), the correction's final text."""
    if task.kind == TaskKind.PAIRWISE:
        payload = {"choice": post.get("choice", "")}
        if post.get("strength"):
            payload["strength"] = post["strength"]
        return payload
    if task.kind == TaskKind.RANKING:
        try:
            tiers = json.loads(post.get("ranking") or "")
        except ValueError:
            raise ValidationFailed(
                "order the responses with the ranking control", field="ranking"
            ) from None
        problem = json_value_problem(tiers)
        if problem:
            raise ValidationFailed(f"ranking {problem[1]}", field="ranking")
        return {"ranking": tiers}
    if task.kind == TaskKind.RUBRIC:
        scores: dict[str, dict[str, int]] = {}
        # Responses are named as the review view names them (their items' refs, never raw
        # response ids); ``selectors.payload_from_reviewer`` maps them back.
        for item_id in task.items.order_by("position").values_list("pk", flat=True):
            response_id = item_ref(item_id)
            row = scores[str(response_id)] = {}
            for dim in task.project.rubric:
                field = f"score-{response_id}-{dim['name']}"
                raw = post.get(field, "")
                if int64_problem(raw):
                    raise ValidationFailed(
                        f"choose a score for {dim['name']} of response #{response_id}",
                        field=field,
                    )
                row[dim["name"]] = int(raw)
        return {"scores": scores}
    if task.kind == TaskKind.CORRECTION:
        # A browser sends a textarea's line ends as CRLF (the HTML form encoding); the text
        # the page showed had the original's "\n", so "no change" must still compare equal.
        text = post.get("corrected_text", "").replace("\r\n", "\n")
        payload = {"corrected_text": text}
        if post.get("response_id"):
            raw = post["response_id"]
            if int64_problem(raw):
                raise ValidationFailed("response_id is not a response of this task",
                                       field="response_id")  # fmt: skip
            payload["response_id"] = int(raw)
        return payload
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
                    task, _decision_payload(task, request.POST)
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
    view = selectors.review_task_view(task)
    return render(
        request,
        "frontend/review_task.html",
        {
            "task": task,
            "view": view,
            # The ranking control (the annotator's module) draws each response from its
            # sanitised HTML, as the annotate page does.
            "ranking_items": json.dumps(
                [
                    {"id": r["id"], "html": markdown_to_safe_html(r["text"])}
                    for r in view["responses"]
                ]
            ),
            "rubric": [
                {**dim, "values": range(dim["min"], dim["max"] + 1)}
                for dim in (task.project.rubric if task.kind == TaskKind.RUBRIC else [])
            ],
            "allowed_flags": project_allowed_flags(task.project),
        },
    )
