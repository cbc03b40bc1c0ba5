"""Project invitations: membership by consent.

A project admin invites a username or an e-mail address; nothing about the invitation
depends on whether such an account exists, so the admin learns nothing from it. The person
whose username or e-mail matches sees it on their home page and accepts (a Membership is
created then, not before) or declines. Platform staff may still add a member directly; that
is recorded here too, as an invitation in state ``added``, so every membership a person did
not accept themselves has a row saying who added them and when.
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
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True)

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
