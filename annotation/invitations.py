"""Project invitations: membership by consent.

A project admin invites a username or an e-mail address; nothing about the invitation
depends on whether such an account exists, so the admin learns nothing from it. The person
whose username or e-mail matches sees it on their home page and accepts (a Membership is
created then, not before) or declines. Platform staff may still add a member directly; that
is recorded here too, as an invitation in state ``added``, so every membership a person did
not accept themselves has a row saying who added them and when.

An invitation lapses: it expires ``TANDEM_INVITATION_DAYS`` after it was made (or last
renewed by inviting the same person again), and a project admin may revoke it before it is
answered. An expired or revoked invitation is answered by nobody: to its invitee it no longer
exists (404), and it leaves the project's pending list.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.roles import Role


class InvitationState(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ADDED = "added"  # added directly by platform staff, without asking
    REVOKED = "revoked"  # withdrawn by a project admin before it was answered


def invitee_key(text: str) -> str:
    """How an invitee is compared: a username or an e-mail address, trimmed and casefolded."""
    return (text or "").strip().casefold()


def invitee_keys_of(user) -> list[str]:
    """What an invitation addressed to ``user`` may name: their username or their e-mail."""
    return [k for k in (invitee_key(user.username), invitee_key(user.email)) if k]


class Invitation(models.Model):
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="invitations"
    )
    invitee = models.CharField(max_length=254, help_text="Username or e-mail, casefolded.")
    role = models.CharField(max_length=16, choices=Role.choices)
    state = models.CharField(
        max_length=16, choices=InvitationState.choices, default=InvitationState.PENDING
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="invitations",
        help_text="Who accepted, declined or was added; empty while pending.",
    )
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A pending invitation lapses then (empty: never)."
    )
    answered_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was accepted, declined, added or revoked."
    )

    class Meta:
        app_label = "annotation"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "invitee"],
                condition=Q(state="pending"),
                name="invitation_one_pending_per_invitee",
            ),
        ]

    def __str__(self):
        return f"{self.invitee} as {self.role} in {self.project} ({self.state})"


def open_invitations(queryset, *, now=None):
    """``queryset`` narrowed to the invitations that can still be answered: pending and not
    expired. The one rule every reader of pending invitations goes through."""
    from django.utils import timezone

    now = now or timezone.now()
    return queryset.filter(state=InvitationState.PENDING).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
