"""Server-rendered pages. Each view: one access gate, one service or selector, a template."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation import importers, selectors, services
from annotation.access import access_invitation, access_project
from annotation.labels import FLAGS
from annotation.models import TaskKind
from annotation.quality.aggregation import POLICIES
from annotation.quality.flag_policy import ACTIONS as FLAG_ACTIONS
from annotation.rendering import markdown_to_safe_html
from annotation.roles import Capability, Role, role_can
from config.errors import DomainError, ValidationFailed
from config.untrusted import int64_problem


@login_required
def home(request):
    projects = selectors.project_list_for_user(request.user)
    rows = [
        {
            "project": p,
            "role": p.viewer_role,
            "can_annotate": role_can(p.viewer_role, Capability.ANNOTATE),
            "can_manage": role_can(p.viewer_role, Capability.MANAGE),
            "can_read_data": role_can(p.viewer_role, Capability.DATA),
            "can_review": role_can(p.viewer_role, Capability.REVIEW),
            "progress": selectors.project_progress(p, user=request.user),
        }
        for p in projects
    ]
    invitations = selectors.invitation_list_for_user(request.user)
    return render(request, "frontend/home.html", {"rows": rows, "invitations": invitations})


@login_required
def annotate(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.ANNOTATE)
    return render(
        request,
        "frontend/annotate.html",
        {
            "project": project,
            "guidelines_html": markdown_to_safe_html(project.guidelines),
            "progress": selectors.project_progress(project, user=request.user),
            "review": review_settings(project),
        },
    )


def review_settings(project) -> dict:
    from models_registry.review_selectors import review_settings as read

    return read(project)


def _annotation_settings_form(request) -> dict:
    """The manage page's form as ``project_settings_update`` changes (empty: the default)."""

    def number(key, kind):
        text = request.POST.get(key, "").strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            raise ValidationFailed(f"{key} must be a number", field=key) from None

    try:
        rubric = json.loads(request.POST.get("rubric") or "null")
    except ValueError:
        raise ValidationFailed("the rubric must be JSON", field="rubric") from None
    changes = {
        "quality": {
            "gold_rate": number("gold_rate", float),
            "gold_threshold": number("gold_threshold", float),
            "gold_min_answers": number("gold_min_answers", int),
        },
        "aggregation": {
            "policy": request.POST.get("policy") or None,
            "min_agreement": number("min_agreement", float),
            "min_labels": number("min_labels", int),
        },
        "flags": {
            "allowed": request.POST.getlist("allowed_flags"),
            "min_flags": number("min_flags", int),
            **{flag: request.POST.get(f"flag_{flag}") or None for flag in FLAG_ACTIONS},
        },
        "labels": {"edit_window_hours": number("edit_window_hours", int)},
    }
    if rubric is not None:
        changes["rubric"] = rubric
    return changes


def _member_id(raw) -> int | None:
    return None if int64_problem(raw) else int(raw)


def _manage_member(request, project):
    role = request.POST.get("role")
    result = services.member_add_or_invite(
        project=project, by=request.user, name=request.POST.get("username", ""), role=role
    )
    if result.membership is None:
        messages.success(request, "Invitation created.")
    else:
        messages.success(request, f"{result.membership.user.username} is now {role}.")


@login_required
@require_http_methods(["POST"])
def invitation_answer(request, invitation_id: int):
    invitation = access_invitation(request.user, invitation_id)
    accept = request.POST.get("answer") == "accept"
    try:
        services.invitation_answer(invitation=invitation, user=request.user, accept=accept)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        verb = "joined" if accept else "declined the invitation to"
        messages.success(request, f"You {verb} {invitation.project.name}.")
    return redirect("frontend:home")


def _manage_post(request, project):
    action = request.POST.get("action")
    if action == "settings":
        kinds = request.POST.getlist("task_kinds")
        services.project_update(
            project=project,
            name=request.POST.get("name", project.name),
            guidelines=request.POST.get("guidelines", ""),
            task_kinds=kinds,
            overlap=int(request.POST.get("overlap") or project.overlap),
            lease_seconds=int(request.POST.get("lease_seconds") or project.lease_seconds),
        )
        messages.success(request, "Settings saved.")
    elif action == "review":
        from models_registry.review_settings import review_settings_update

        def number(key, kind):
            text = request.POST.get(key, "").strip()
            return kind(text) if text else None

        review_settings_update(
            project=project,
            review_min_labels=number("review_min_labels", int),
            review_min_win_rate=number("review_min_win_rate", float),
            review_fresh_prompts=number("review_fresh_prompts", int),
            annotation_round_prompts=number("annotation_round_prompts", int),
        )
        messages.success(request, "Review settings saved.")
    elif action == "annotation_settings":
        services.project_settings_update(
            project=project, changes=_annotation_settings_form(request)
        )
        messages.success(request, "Label and quality settings saved.")
    elif action == "member":
        _manage_member(request, project)
    elif action == "member_group":
        membership = project.memberships.filter(
            user_id=_member_id(request.POST.get("user_id"))
        ).first()
        if membership is None:
            raise Http404("No such member.")
        services.membership_group_set(membership=membership, group=request.POST.get("group", ""))
        messages.success(request, f"Group of {membership.user.username} saved.")
    elif action == "import":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "Choose a file to import.")
        else:
            batch = importers.import_file(
                project=project,
                data=upload.read(),
                filename=upload.name or "upload",
                kind=request.POST.get("kind", "prompts"),
                created_by=request.user,
                annotator_name=request.POST.get("annotator_name") or None,
            )
            counts = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in batch.counts.items())
            messages.success(request, f"Imported {batch.filename}. {counts}.")
    else:
        messages.error(request, "Unknown action.")


@login_required
@require_http_methods(["GET", "POST"])
def project_manage(request, project_id: int):
    project = access_project(request.user, project_id, capability=Capability.MANAGE)
    if request.method == "POST":
        try:
            _manage_post(request, project)
        except (DomainError, ValueError) as exc:
            messages.error(request, getattr(exc, "message", None) or str(exc))
        return redirect("frontend:project-manage", project_id=project.pk)
    lead = services.project_settings(project)
    return render(
        request,
        "frontend/manage.html",
        {
            "project": project,
            "members": project.memberships.select_related("user").order_by("user__username"),
            "invitations": selectors.invitation_list_for_project(project),
            "roles": Role.choices,
            "kinds": TaskKind.choices,
            "imports": project.imports.all()[:20],
            "progress": selectors.project_progress(project, user=request.user),
            "review": review_settings(project),
            "lead": lead,
            "policies": POLICIES,
            "flags": FLAGS,
            "flag_actions": [
                (flag, actions, lead["flags"][flag]) for flag, actions in FLAG_ACTIONS.items()
            ],
            "rubric_json": json.dumps(project.rubric, indent=1) if project.rubric else "",
        },
    )
