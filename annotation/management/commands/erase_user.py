"""Erase an account: its labels stay under a pseudonym (annotation.services.erasure)."""

import json
from dataclasses import asdict

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.services.erasure import user_erase
from config.errors import DomainError


class Command(BaseCommand):
    help = (
        "Erase a user's account (right to erasure): the account becomes a pseudonym that keeps "
        "their labels; tokens, sessions, memberships and invitations are deleted; rationales "
        "are removed unless the label's project keeps them. Prints what was done as JSON."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--actor", help="username of the staff member who asked (recorded in the audit log)"
        )
        parser.add_argument("--yes", action="store_true", help="do it (without it: refused)")

    def handle(self, username, actor, yes, **_):
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        by = None
        if actor:
            by = users.filter(username=actor, is_staff=True, is_active=True).first()
            if by is None:
                raise CommandError(f"--actor: no active staff user {actor!r}")
        if not yes:
            raise CommandError("erasure cannot be undone: run again with --yes")
        try:
            result = user_erase(user=user, actor=by)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(asdict(result)))
