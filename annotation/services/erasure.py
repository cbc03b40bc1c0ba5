"""Erasing an account (the right to erasure) while its labels stay usable.

A label is the product and a snapshot is frozen on label ids, so an erased annotator's labels
stay, and they stay *theirs*: agreement, gold and per-annotator statistics keep treating them
as one annotator. What goes is the person:

- the account row is kept as a pseudonym: its username becomes ``erased-<random hex>`` (no
  function of the old one), e-mail and names are emptied, the password unusable, every flag
  and permission off, so it can never sign in again; ``Label.annotator`` (PROTECT) and the
  registry's audit actors keep pointing at a valid row, and every page that named the person
  now shows the pseudonym;
- API tokens, sessions, memberships, leases (with their skip reasons), idempotency records and
  invitations addressed to or answered by the account are deleted;
- free-text rationales of their labels (and of the labels' earlier revisions) are removed,
  unless the label's project keeps them (``privacy.keep_rationales_on_erasure``).

Snapshots need nothing: their files and data cards carry label and annotator ids and counts,
never usernames (``rlhf.data``), and no judgement changes, so a rebuild exports the same rows.
The erasure is recorded in the data audit log under the pseudonym, never the old name.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.audit import DataAuditAction, DataAuditEvent, data_audit_record
from annotation.invitations import Invitation, invitee_keys_of
from annotation.models import (
    ENCRYPTED_PAYLOAD_KEYS,
    IdempotencyRecord,
    Label,
    LabelRevision,
    Lease,
    Membership,
    Project,
)
from annotation.roles import Role
from annotation.services.project_settings import project_privacy
from annotation.tokens import ApiToken
from config.errors import Conflict

User = get_user_model()
PSEUDONYM_PREFIX = "erased-"
_BATCH = 500


@dataclass(frozen=True)
class ErasureResult:
    user_id: int
    pseudonym: str
    labels_kept: int
    rationales_removed: int
    rationales_kept: int
    tokens: int
    sessions: int
    memberships: int
    invitations: int
    leases: int


def user_is_erased(user) -> bool:
    return DataAuditEvent.objects.filter(
        action=DataAuditAction.USER_ERASED, subject=f"user:{user.pk}"
    ).exists()


def _new_pseudonym() -> str:
    while True:
        name = PSEUDONYM_PREFIX + secrets.token_hex(6)
        if not User.objects.filter(username=name).exists():
            return name


def _refusal(user, actor) -> Conflict | None:
    if user_is_erased(user):
        return Conflict("this account is already erased", code="already_erased")
    if user.is_superuser:
        return Conflict(
            "a superuser cannot be erased; remove their superuser status first",
            code="erase_superuser",
        )
    if actor is not None and actor.pk == user.pk and user.is_staff:
        return Conflict("staff accounts are erased by another staff member", code="erase_own_staff")
    sole_admin_of = (
        Membership.objects.filter(user=user, role=Role.ADMIN)
        .annotate(
            admins=Count("project__memberships", filter=Q(project__memberships__role=Role.ADMIN))
        )
        .filter(admins=1)
        .values_list("project_id", flat=True)
    )
    if sole_admin_of:
        return Conflict(
            "this account is the only admin of a project; give the project another admin first",
            code="last_admin",
            project_ids=sorted(sole_admin_of),
        )
    return None


def _sessions_of(user) -> list[str]:
    """Keys of the database sessions signed in as ``user`` (decoded: the id is inside)."""
    keys = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            keys.append(session.session_key)
    return keys


def _without_rationale(payload):
    if not isinstance(payload, dict):
        return payload, False
    if not any(payload.get(k) for k in ENCRYPTED_PAYLOAD_KEYS):
        return payload, False
    return {**payload, **{k: "" for k in ENCRYPTED_PAYLOAD_KEYS if k in payload}}, True


def labels_rationales_remove(*, labels) -> int:
    """Empty the rationales of ``labels`` (a queryset) and of their earlier revisions, without
    touching the judgement or the label's version (a snapshot reads the same judgement).
    Returns how many labels lost a rationale. Shared by erasure and retention."""
    removed = 0
    for model, rows in (
        (Label, labels),
        (LabelRevision, LabelRevision.objects.filter(label__in=labels.values("pk"))),
    ):
        batch = []
        for row in rows.only("pk", "payload").iterator(chunk_size=_BATCH):
            row.payload, changed = _without_rationale(row.payload)
            if changed:
                batch.append(row)
                removed += model is Label
            if len(batch) >= _BATCH:
                model.objects.bulk_update(batch, ["payload"])
                batch = []
        if batch:
            model.objects.bulk_update(batch, ["payload"])
    return removed


@transaction.atomic
def user_erase(*, user, actor=None) -> ErasureResult:
    """Erase ``user`` as described in this module; all or nothing. ``actor``: who asked (staff,
    or the user themselves); ``None`` for a command run by the operator."""
    user = User.objects.select_for_update().get(pk=user.pk)
    refusal = _refusal(user, actor)
    if refusal is not None:
        raise refusal

    labels = Label.objects.filter(annotator=user)
    kept_projects = [
        p.pk
        for p in Project.objects.filter(tasks__labels__annotator=user).distinct()
        if project_privacy(p)["keep_rationales_on_erasure"]
    ]
    rationales_kept = sum(
        1
        for payload in labels.filter(task__project_id__in=kept_projects).values_list(
            "payload", flat=True
        )
        if isinstance(payload, dict) and any(payload.get(k) for k in ENCRYPTED_PAYLOAD_KEYS)
    )
    rationales_removed = labels_rationales_remove(
        labels=labels.exclude(task__project_id__in=kept_projects)
    )

    invitations = Invitation.objects.filter(Q(user=user) | Q(invitee__in=invitee_keys_of(user)))
    session_keys = _sessions_of(user)
    counts = {
        "tokens": ApiToken.objects.filter(user=user).delete()[0],
        "sessions": Session.objects.filter(session_key__in=session_keys).delete()[0],
        "memberships": Membership.objects.filter(user=user).delete()[0],
        "invitations": invitations.delete()[0],
        "leases": Lease.objects.filter(annotator=user).delete()[0],
    }
    IdempotencyRecord.objects.filter(user=user).delete()

    pseudonym = _new_pseudonym()
    user.username = pseudonym
    user.email = ""
    user.first_name = ""
    user.last_name = ""
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.last_login = None
    user.set_unusable_password()
    user.save()
    user.groups.clear()
    user.user_permissions.clear()

    result = ErasureResult(
        user_id=user.pk,
        pseudonym=pseudonym,
        labels_kept=labels.count(),
        rationales_removed=rationales_removed,
        rationales_kept=rationales_kept,
        **counts,
    )
    data_audit_record(
        action=DataAuditAction.USER_ERASED,
        subject=f"user:{user.pk}",
        actor=None if actor is not None and actor.pk == user.pk else actor,
        details={**asdict(result), "self_requested": actor is not None and actor.pk == user.pk},
    )
    return result
