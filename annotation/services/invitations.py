"""Invitations: an admin invites, the invitee answers; platform staff may add directly."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotation.invitations import Invitation, InvitationState, invitee_key, open_invitations
from annotation.models import Membership, Project
from annotation.roles import Role
from annotation.services.members import membership_set
from config.errors import Conflict, DomainError, Forbidden, ValidationFailed

User = get_user_model()

logger = logging.getLogger("tandem.audit")


def _valid_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {Role.values}", field="role")


@transaction.atomic
def invitation_create(*, project: Project, invited_by, invitee: str, role: str) -> Invitation:
    """A pending invitation (or the pending one, with its role updated and its expiry
    renewed). Never reads users: what happens here is the same whether or not the account
    exists."""
    _valid_role(role)
    key = invitee_key(invitee)
    if not key or len(key) > 254:
        raise ValidationFailed("name a username or an e-mail address", field="username")
    invitation, _ = Invitation.objects.update_or_create(
        project=project,
        invitee=key,
        state=InvitationState.PENDING,
        defaults={
            "role": role,
            "invited_by": invited_by,
            "expires_at": timezone.now() + timedelta(days=settings.TANDEM_INVITATION_DAYS),
        },
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, by) -> Invitation:
    """A project admin withdraws a pending invitation (``access_project_invitation``); its
    invitee can no longer answer it. An answered one is a 409: there is nothing to withdraw."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != InvitationState.PENDING:
        raise Conflict("this invitation was already answered", code="invitation_answered")
    invitation.state = InvitationState.REVOKED
    invitation.revoked_by = by
    invitation.answered_at = timezone.now()
    invitation.save(update_fields=["state", "revoked_by", "answered_at"])
    logger.info(
        "invitation revoked: project=%s invitation=%s by=%s",
        invitation.project_id,
        invitation.pk,
        by.pk,
    )
    return invitation


@transaction.atomic
def invitation_answer(*, invitation: Invitation, user, accept: bool) -> Invitation:
    """The invitee's answer; accepting creates (or sets) the membership, declining nothing."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.state != InvitationState.PENDING:
        raise Conflict("this invitation was already answered", code="invitation_answered")
    if not open_invitations(Invitation.objects.filter(pk=invitation.pk)).exists():
        raise Conflict("this invitation has expired", code="invitation_expired")
    invitation.state = InvitationState.ACCEPTED if accept else InvitationState.DECLINED
    invitation.user = user
    invitation.answered_at = timezone.now()
    invitation.save(update_fields=["state", "user", "answered_at"])
    if accept:
        membership_set(project=invitation.project, user=user, role=invitation.role)
    return invitation


@transaction.atomic
def member_add_by_staff(*, project: Project, user, role: str, added_by) -> Membership:
    """Platform staff add a member without asking; the addition is recorded (and logged)."""
    _valid_role(role)
    if not added_by.is_staff:
        raise ValidationFailed("only platform staff add members directly", code="staff_only")
    membership = membership_set(project=project, user=user, role=role)
    Invitation.objects.create(
        project=project,
        invitee=invitee_key(user.username),
        role=role,
        state=InvitationState.ADDED,
        invited_by=added_by,
        user=user,
        answered_at=timezone.now(),
    )
    logger.info(
        "member added directly: project=%s user=%s role=%s by=%s",
        project.pk,
        user.pk,
        role,
        added_by.pk,
    )
    return membership


class NoSuchUser(DomainError):
    http_status = 404
    code = "not_found"


@dataclass(frozen=True)
class MemberRequest:
    """What adding ``name`` to a project did: ``membership`` set, or an invitation created."""

    membership: Membership | None
    invitation: Invitation | None


def member_add_or_invite(*, project: Project, by, name: str, role: str) -> MemberRequest:
    """The one rule behind "add a member" (API and manage page).

    A current member's role changes at once (an admin sees the members anyway). Platform
    staff add an existing account directly (recorded). Anyone else is invited, and nothing in
    the answer depends on whether an account by that name or address exists.
    """
    member = project.memberships.filter(user__username=name).select_related("user").first()
    user = member.user if member else None
    if user is None and by.is_staff:
        user = User.objects.filter(username=name, is_active=True).first()
        if user is None:
            raise NoSuchUser("No active user with that name.")
    if user is None:
        invitation = invitation_create(project=project, invited_by=by, invitee=name, role=role)
        return MemberRequest(membership=None, invitation=invitation)
    if user.pk == by.pk and role != Role.ADMIN:
        raise Forbidden("You cannot change your own role.", code="own_role")
    if member is None:
        membership = member_add_by_staff(project=project, user=user, role=role, added_by=by)
    else:
        membership = membership_set(project=project, user=user, role=role)
    return MemberRequest(membership=membership, invitation=None)
