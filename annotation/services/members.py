"""Project members and user accounts (people, and the accounts imported labels stand for)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from annotation.models import Lease, LeaseState, Membership, Project
from annotation.roles import Role
from config.errors import Conflict, ValidationFailed

User = get_user_model()


@transaction.atomic
def membership_set(*, project: Project, user, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {Role.values}", field="role")
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


MAX_GROUP_CHARS = 64


@transaction.atomic
def membership_group_set(*, membership: Membership, group: str) -> Membership:
    """Put a member in an annotator group (the bias audit compares groups), or out of every
    group with ``""``. Optional: no other part of the platform needs it."""
    if not isinstance(group, str):
        raise ValidationFailed("group must be text", field="group")
    group = " ".join(group.split())
    if len(group) > MAX_GROUP_CHARS:
        raise ValidationFailed(f"group is longer than {MAX_GROUP_CHARS} characters", field="group")
    if not group.isprintable():
        raise ValidationFailed("group must be printable text", field="group")
    membership.group = group
    membership.save(update_fields=["group"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user) -> None:
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return
    if (
        membership.role == Role.ADMIN
        and not Membership.objects.filter(project=project, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    ):
        raise Conflict("a project keeps at least one admin", code="last_admin")
    membership.delete()
    Lease.objects.filter(task__project=project, annotator=user, state=LeaseState.ACTIVE).update(
        state=LeaseState.RELEASED, closed_at=timezone.now()
    )


def user_create(*, username: str, password: str | None, email: str = "", is_staff=False):
    if User.objects.filter(username=username).exists():
        raise Conflict(f"user {username!r} exists", code="user_exists")
    user = User(username=username, email=email, is_staff=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user


def user_external_get_or_create(*, name: str):
    """The account that stands for labels imported from elsewhere; it can never log in."""
    username = f"external:{slugify(name)[:100] or 'import'}"
    user, created = User.objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
