"""The access gates: every project, task and label a user asks for is fetched here.

Views, API endpoints, websocket consumers and commands call these and nothing else to turn an
id from a request into an object. A foreign id (another project's, or one that does not
exist) raises ``Http404``: it never tells the caller that the object exists. A member who
lacks the capability gets ``PermissionDenied`` (403).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, Subquery
from django.http import Http404
from django.utils import timezone

from annotation.invitations import Invitation, invitee_keys_of, open_invitations
from annotation.models import Label, Lease, LeaseState, Membership, Project, Task, TaskStatus
from annotation.opaque import task_id_from_ref
from annotation.roles import Capability, role_can


def membership_for(user, project_id) -> Membership | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        return None
    return (
        Membership.objects.select_related("project")
        .filter(user=user, project_id=project_id)
        .first()
    )


def project_role(user, project_id) -> str | None:
    membership = membership_for(user, project_id)
    return membership.role if membership else None


def access_project(user, project_id, *, capability: str = Capability.VIEW) -> Project:
    """The project, if ``user`` is a member with ``capability``; else 404 (or 403)."""
    membership = membership_for(user, project_id)
    if membership is None:
        raise Http404("No such project.")
    if not role_can(membership.role, capability):
        raise PermissionDenied(f"Your role in this project cannot {capability}.")
    project = membership.project
    project.viewer_role = membership.role
    return project


def can_create_projects(user) -> bool:
    """The one rule for who may create a project (``TANDEM_PROJECT_CREATORS``)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_staff or settings.TANDEM_PROJECT_CREATORS == "everyone"


def access_project_creation(user) -> None:
    """403 unless ``user`` may create projects (the page, Home's button and the API)."""
    if not can_create_projects(user):
        raise PermissionDenied("Only platform staff create projects here; ask one of them.")


def access_task(
    user, task_id, *, capability: str = Capability.ANNOTATE, skipped: bool = False
) -> Task:
    """A task for annotating: only one the user holds a lease on or has labelled (or, with
    ``skipped``, for undoing a skip: skipped).

    Annotators are blind: they cannot open arbitrary tasks (and so cannot read other
    tasks' responses) by guessing ids. Members with the ``data`` capability may open any
    task of their project, read-only.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such task.")
    # One statement answers all three questions: the task, the user's role in its project,
    # and whether the user holds (or held) it. It sits on every submit.
    role = Membership.objects.filter(project_id=OuterRef("project_id"), user=user)
    states = [LeaseState.ACTIVE, LeaseState.SUBMITTED] + ([LeaseState.SKIPPED] if skipped else [])
    leased = Lease.objects.filter(task_id=OuterRef("pk"), annotator=user, state__in=states)
    labelled = Label.objects.filter(task_id=OuterRef("pk"), annotator=user)
    try:
        task = (
            Task.objects.select_related("project")
            .annotate(
                viewer_role=Subquery(role.values("role")[:1]),
                viewer_leased=Exists(leased),
                viewer_labelled=Exists(labelled),
            )
            .get(pk=task_id_from_ref(task_id))
        )
    except (Task.DoesNotExist, TypeError, ValueError):
        raise Http404("No such task.") from None
    role = task.viewer_role
    if role is None:
        raise Http404("No such task.")
    if capability == Capability.DATA:
        if not role_can(role, Capability.DATA):
            raise PermissionDenied("Your role cannot read this project's data.")
        return task
    if not role_can(role, capability):
        raise PermissionDenied(f"Your role in this project cannot {capability}.")
    if not (task.viewer_leased or task.viewer_labelled):
        raise Http404("No such task.")
    return task


# Why a task is sealed, by the condition that seals it (``review_seals``).
REVIEW_SEALED_REASONS = {
    "open": "the task is still open for labelling",
    "leased": "you hold a lease on this task",
    "own_label_editable": "your own label on this task can still be edited",
}


def review_seals(user, *, project: Project) -> dict:
    """The sealing rule, as conditions over ``Task`` rows of ``project`` (keys as in
    ``REVIEW_SEALED_REASONS``): a task is sealed for ``user`` while any holds.

    Reviewers and admins also annotate. Were they shown how an open task is being labelled
    (and, on a review round, its canonical sides with every label so far), they could label it
    knowing the others' answers, or learn which side the candidate is on. So a task stays
    sealed while it is open (any member who annotates could still draw it), while ``user``
    holds a lease on it, and while ``user``'s own label on it can still be edited. The one
    task view (``review_sealed_reason``) and the bulk reads (``review_sealed_filter``) both
    decide through here.
    """
    from annotation.services.project_settings import project_label_edit_window

    now = timezone.now()
    own = Label.objects.filter(task_id=OuterRef("pk"), annotator=user, reviewed_at__isnull=True)
    window = project_label_edit_window(project)
    if window is not None:
        own = own.filter(created_at__gte=now - window)
    leased = Lease.objects.filter(
        task_id=OuterRef("pk"), annotator=user, state=LeaseState.ACTIVE, expires_at__gt=now
    )
    return {
        "open": Q(status=TaskStatus.OPEN),
        "leased": Q(Exists(leased)),
        "own_label_editable": Q(Exists(own)),
    }


def review_sealed_filter(user, *, project: Project) -> Q:
    """``Task`` rows of ``project`` sealed for ``user`` (``review_seals``), as one filter."""
    sealed = Q()
    for condition in review_seals(user, project=project).values():
        sealed |= condition
    return sealed


def review_sealed_reason(task: Task, user) -> str | None:
    """Why ``user`` may not yet see ``task``'s sides and other people's labels, or None
    (the rule: ``review_seals``); one query."""
    seals = review_seals(user, project=task.project)
    found = (
        Task.objects.filter(pk=task.pk)
        .annotate(
            **{
                f"seal_{name}": ExpressionWrapper(condition, output_field=BooleanField())
                for name, condition in seals.items()
            }
        )
        .values(*(f"seal_{name}" for name in seals))
        .first()
    )
    if found is None:
        return REVIEW_SEALED_REASONS["open"]  # gone meanwhile: show nothing
    for name in seals:
        if found[f"seal_{name}"]:
            return REVIEW_SEALED_REASONS[name]
    return None


def access_label(user, label_id, *, for_edit: bool = False) -> Label:
    """Your own label; reviewers and admins may read (not edit) labels of their projects,
    once the label's task is not sealed for them (``review_sealed_reason``)."""
    try:
        label = Label.objects.select_related("task", "task__project").get(pk=int(label_id))
    except (Label.DoesNotExist, TypeError, ValueError):
        raise Http404("No such label.") from None
    role = project_role(user, label.task.project_id)
    if role is None:
        raise Http404("No such label.")
    if label.annotator_id == user.pk:
        return label
    if for_edit or not role_can(role, Capability.REVIEW):
        raise Http404("No such label.")
    if review_sealed_reason(label.task, user):
        raise Http404("No such label.")
    return label


def access_invitation(user, invitation_id) -> Invitation:
    """A pending invitation addressed to ``user`` (by username or e-mail); else 404, whether
    the invitation is someone else's, answered, revoked, expired or missing."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        raise Http404("No such invitation.")
    try:
        invitation_id = int(invitation_id)
    except (TypeError, ValueError) as exc:
        raise Http404("No such invitation.") from exc
    invitation = (
        open_invitations(Invitation.objects.select_related("project"))
        .filter(pk=invitation_id, invitee__in=invitee_keys_of(user))
        .first()
    )
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def access_project_invitation(user, project_id, invitation_id) -> Invitation:
    """A pending invitation of a project ``user`` manages (to revoke it); else 404 (or 403)."""
    project = access_project(user, project_id, capability=Capability.MANAGE)
    try:
        invitation_id = int(invitation_id)
    except (TypeError, ValueError) as exc:
        raise Http404("No such invitation.") from exc
    invitation = open_invitations(project.invitations.all()).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation
