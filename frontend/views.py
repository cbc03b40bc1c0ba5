"""Server-rendered pages. Each view: one access gate, one service or selector, a template."""

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from annotation import importers, selectors, services
from annotation.access import (
    access_invitation,
    access_project,
    access_project_creation,
    access_project_invitation,
    can_create_projects,
)
from annotation.labels import FLAGS
from annotation.models import (
    DEFAULT_RUBRIC,
    IMPORTABLE_TASK_KIND_CHOICES,
    IMPORTABLE_TASK_KINDS,
    TaskKind,
)
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
    return render(
        request,
        "frontend/home.html",
        {
            "rows": rows,
            "invitations": invitations,
            "can_create_projects": can_create_projects(request.user),
        },
    )


def _form_number(request, key: str, kind: type):
    text = request.POST.get(key, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValidationFailed(f"{key} must be a number", field=key) from None


GOLD_FORM_FIELDS = (("gold_rate", float), ("gold_threshold", float), ("gold_min_answers", int))


def _project_new_form(request) -> dict:
    """The creation form as ``services.project_create`` takes it."""
    try:
        rubric = json.loads(request.POST.get("rubric") or "null")
    except ValueError:
        raise ValidationFailed("the rubric must be JSON", field="rubric") from None
    quality = {
        key: _form_number(request, key, kind)
        for key, kind in (
            ("gold_rate", float),
            ("gold_threshold", float),
            ("gold_min_answers", int),
        )
    }
    quality = {key: value for key, value in quality.items() if value is not None}
    return {
        "name": request.POST.get("name", ""),
        "guidelines": request.POST.get("guidelines", ""),
        "task_kinds": request.POST.getlist("task_kinds"),
        "overlap": _form_number(request, "overlap", int) or 1,
        "rubric": rubric,
        "lead_settings": {"quality": quality} if quality else None,
    }


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request):
    """Create a project: its creator becomes its admin and lands on its manage page."""
    access_project_creation(request.user)
    error = None
    if request.method == "POST":
        try:
            fields = _project_new_form(request)
            if not fields["task_kinds"]:
                raise ValidationFailed("choose at least one task kind", field="task_kinds")
            project = services.project_create(created_by=request.user, **fields)
        except DomainError as exc:
            error = exc
        else:
            messages.success(request, f"Project {project.name} created; you are its admin.")
            return redirect("frontend:project-manage", project_id=project.pk)
    form = request.POST if request.method == "POST" else None
    return render(
        request,
        "frontend/project_new.html",
        {
            "error": error,
            "error_field": getattr(error, "extra", {}).get("field") if error else None,
            "form": form,
            "kinds": IMPORTABLE_TASK_KIND_CHOICES,
            "chosen_kinds": form.getlist("task_kinds") if form else list(IMPORTABLE_TASK_KINDS),
            "rubric_json": (form.get("rubric") if form else json.dumps(DEFAULT_RUBRIC, indent=1)),
        },
        status=400 if error else 200,
    )


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
            # Only the flags the project allows are offered (the API refuses the others).
            "allowed_flags": ",".join(services.project_allowed_flags(project)),
            "undo_seconds": settings.TANDEM_UNDO_SECONDS,
            # The reward model's preference, shown after each submit (off unless the lead
            # turns it on: labels.reward_feedback).
            "reward_feedback": services.project_reward_feedback(project),
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
        "labels": {
            "edit_window_hours": number("edit_window_hours", int),
            # A checkbox: unchecked sends nothing, which clears the setting (off, the default).
            "reward_feedback": True if request.POST.get("reward_feedback") else None,
        },
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
    elif action == "revoke_invitation":
        invitation = access_project_invitation(
            request.user, project.pk, request.POST.get("invitation_id")
        )
        services.invitation_revoke(invitation=invitation, by=request.user)
        messages.success(request, f"The invitation of {invitation.invitee} was revoked.")
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
            importers.upload_size_check(file_bytes=upload.size)  # before the upload is read
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
            # Before request.POST is touched: parsing it would spool a whole upload to disk.
            importers.upload_size_check(request_bytes=importers.declared_length(request.META))
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
            "kinds": IMPORTABLE_TASK_KIND_CHOICES,
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
            "max_import_bytes": settings.TANDEM_MAX_IMPORT_BYTES,
            "row_examples": importers.ROW_EXAMPLES,
        },
    )


@login_required
def explorer(request, project_id: int):
    """The data explorer's page; its table is filled by explorer.js from the explorer API."""
    from annotation.explorer.selectors import REVIEW_STATES

    project = access_project(request.user, project_id, capability=Capability.DATA)
    return render(
        request,
        "frontend/explorer.html",
        {
            "project": project,
            "kinds": TaskKind.choices,
            "flags": FLAGS,
            "review_states": REVIEW_STATES,
            "can_manage": role_can(project.viewer_role, Capability.MANAGE),
            "can_review": role_can(project.viewer_role, Capability.REVIEW),
        },
    )
