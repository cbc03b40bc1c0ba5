"""Registry pages: a project's versions, a version's lineage, the reviewer's decision page, the
project's audit log and its Bradley-Terry leaderboard.

One access gate and one selector or service per view. The decision page calls the registry's
own service (``model_version_decide``): a refusal (own run, not enough reviews, win rate too
low, evaluation not finished and not waived, no rationale) is shown as a message and changes
nothing.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.views import View
from django.views.decorators.http import require_GET, require_http_methods

from annotation.access import access_project
from annotation.roles import Capability, role_can
from config.errors import DomainError
from models_registry import proposals, review_selectors, round_report, selectors, services
from models_registry.access import access_model_version
from models_registry.forms import AuditFilterForm, ProposalFilterForm, ProposalStartForm
from models_registry.models import LoopRound, RoundKind, VersionKind
from models_registry.serving import selectors as serving_selectors
from models_registry.serving.models import CanaryMode


@login_required
def version_list_page(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.DATA)
    versions = list(selectors.model_version_list(project=project))
    for version in versions:
        version.awaits_decision = review_selectors.model_version_awaits_decision(version)
    return render(
        request,
        "models_registry/versions.html",
        {
            "project": project,
            "versions": versions,
            "champion": selectors.alias_target(project=project),
            "rounds": LoopRound.objects.filter(project=project).select_related("version")[:20],
            "can_review": role_can(project.viewer_role, Capability.REVIEW),
            "can_train": role_can(project.viewer_role, Capability.TRAIN),
            "can_manage": role_can(project.viewer_role, Capability.MANAGE),
            "proposal_counts": proposals.proposal_counts(project=project),
        },
    )


class ProposalStartPage(LoginRequiredMixin, View):
    """The versions page's "Propose data" button: the champion proposes prompt variants or
    corrections, which people then confirm (``models_registry.proposals``). POST only: a
    class view says so, so route discovery never GETs it."""

    def post(self, request, project_id: int):
        project = access_project(request.user, project_id, capability=Capability.TRAIN)
        form = ProposalStartForm(request.POST)
        if not form.is_valid():
            field, errors = next(iter(form.errors.items()))
            messages.error(request, f"Nothing proposed: {field}: {errors[0]}")
            return redirect("models:list", project_id=project.pk)
        try:
            job = proposals.proposal_job_create(
                project=project,
                kind=form.cleaned_data["kind"],
                variants=form.cleaned_data["variants"] or 2,
                limit=form.cleaned_data["limit"] or proposals.DEFAULT_SOURCES,
                created_by=request.user,
            )
        except DomainError as exc:
            messages.error(request, f"Nothing proposed: {exc.message} ({exc.code})")
            return redirect("models:list", project_id=project.pk)
        messages.success(
            request,
            f"Generation job {job.pk} queued: {job.total} {job.purpose} proposals to confirm.",
        )
        return redirect("models:list", project_id=project.pk)


@login_required
def version_page(request, version_id: int):
    version = access_model_version(request.user, version_id)
    return render(
        request,
        "models_registry/lineage.html",
        {
            "project": version.project,
            "version": version,
            "lineage": review_selectors.model_version_lineage(version),
            "tree": selectors.model_version_tree(project=version.project),
            "can_review": role_can(version.viewer_role, Capability.REVIEW),
            "awaits_decision": review_selectors.model_version_awaits_decision(version),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def decision_page(request, version_id: int):
    version = access_model_version(request.user, version_id, capability=Capability.REVIEW)
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        try:
            services.model_version_decide(
                version=version,
                actor=request.user,
                decision=decision,
                reason=request.POST.get("rationale", ""),
                without_evaluation=request.POST.get("without_evaluation") == "on",
            )
        except DomainError as exc:
            messages.error(request, f"Not {decision or 'decided'}: {exc.message} ({exc.code})")
            return redirect("models:decide", version_id=version.pk)
        messages.success(request, f"{version.label}: {decision}d.")
        return redirect("models:version", version_id=version.pk)
    evidence = review_selectors.decision_evidence(version)
    return render(
        request,
        "models_registry/decision.html",
        {
            "project": version.project,
            "version": version,
            "evidence": evidence,
            "chart_json": json.dumps(evidence["chart"]),
            "own_run": version.launched_by_id == request.user.pk,
            "can_decide": review_selectors.model_version_awaits_decision(version),
            "waivable": services.EVALUATION_REQUIRED,
        },
    )


@login_required
@require_GET
def audit_log_page(request, project_id: int):
    """The registry's audit trail as a table; the filters travel in the query string."""
    project = access_project(request.user, project_id, capability=Capability.DATA)
    form = AuditFilterForm(request.GET, project=project)
    context = {
        "project": project,
        "form": form,
        "versions": selectors.model_version_list(project=project),
        "actors": selectors.audit_actor_names(project=project),
        "events_page": None,
    }
    if not form.is_valid():
        return render(request, "models_registry/audit_log.html", context, status=400)
    filters = form.cleaned_data
    context["events_page"] = selectors.audit_event_page(
        project=project,
        version=filters["version"],
        actor_name=filters["actor"],
        action=filters["action"],
        date_from=filters["date_from"],
        date_to=filters["date_to"],
        page=filters["page"] or 1,
    )
    # The query string without the page, for the pager's links.
    query = request.GET.copy()
    query.pop("page", None)
    context["filter_query"] = query.urlencode()
    return render(request, "models_registry/audit_log.html", context)


@login_required
@require_GET
def proposal_list_page(request, project_id: int):
    """Every proposal of the project, its source beside it, with its decision and who made it."""
    project = access_project(request.user, project_id, capability=Capability.DATA)
    form = ProposalFilterForm(request.GET)
    context = {"project": project, "form": form, "proposals_page": None}
    if not form.is_valid():
        return render(request, "models_registry/proposals.html", context, status=400)
    filters = form.cleaned_data
    context["proposals_page"] = proposals.proposal_page(
        project=project, kind=filters["kind"], status=filters["status"], page=filters["page"] or 1
    )
    query = request.GET.copy()
    query.pop("page", None)
    context["filter_query"] = query.urlencode()
    return render(request, "models_registry/proposals.html", context)


@login_required
@require_GET
def leaderboard_page(request, project_id: int):
    """Every reviewed policy version ranked by Bradley-Terry over all blind review labels.

    The same bootstrap (samples and seed) as the decision page's table, so a version shows
    the same interval on both pages."""
    project = access_project(request.user, project_id, capability=Capability.DATA)
    standings = selectors.leaderboard(
        project=project, bootstrap_samples=review_selectors.LEADERBOARD_BOOTSTRAP
    )
    return render(
        request,
        "models_registry/leaderboard.html",
        {
            "project": project,
            "standings": standings,
            "comparisons": sum(item["row"].comparisons for item in standings) // 2,
            "bootstrap_samples": review_selectors.LEADERBOARD_BOOTSTRAP,
        },
    )


@login_required
@require_GET
def round_report_page(request, version_id: int):
    """What the version's review rounds bought (``round_report.loop_round_report``)."""
    version = access_model_version(request.user, version_id)
    rounds = (
        LoopRound.objects.filter(version=version, kind=RoundKind.REVIEW)
        .select_related("project", "version__dataset_snapshot", "opponent")
        .order_by("-id")
    )
    return render(
        request,
        "models_registry/round_report.html",
        {
            "project": version.project,
            "version": version,
            "reports": [round_report.loop_round_report(r) for r in rounds],
        },
    )


@login_required
@require_GET
def rounds_page(request, project_id: int):
    """Every review round of the project: its report as a table row, and a chart of the reward
    model's held-out accuracy and the blind win rate against the labels spent."""
    project = access_project(request.user, project_id, capability=Capability.DATA)
    series = round_report.loop_round_series(project)
    return render(
        request,
        "models_registry/rounds.html",
        {
            "project": project,
            "series": series,
            "chart_json": json.dumps(round_report.loop_round_chart(series)),
        },
    )


@login_required
@require_GET
def serving_page(request, project_id: int):
    """The project's Serving page (admins): the gateway and a code sample, start/stop serving
    the champion, the engines, the settings form and the last 24 h of usage. The page reads and
    writes through ``/api/projects/<id>/serving/`` (``serving.js``); this renders its first
    state."""
    project = access_project(request.user, project_id, capability=Capability.MANAGE)
    overview = serving_selectors.serving_overview(project=project)
    gateway_url = request.build_absolute_uri(overview["gateway_path"])
    return render(
        request,
        "models_registry/serving.html",
        {
            "project": project,
            "overview": overview,
            "gateway_url": gateway_url,
            "champion": selectors.alias_target(project=project),
            "policies": selectors.model_version_list(project=project, kind=VersionKind.POLICY),
            "canary_modes": CanaryMode.choices,
        },
    )
