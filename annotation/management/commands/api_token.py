"""Issue or revoke API tokens from the command line (replaces DRF's ``drf_create_token``)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation import services
from annotation.services.tokens import DEFAULT_TOKEN_DAYS
from annotation.tokens import TokenScope
from config.errors import DomainError


class Command(BaseCommand):
    help = "API tokens: create one for a user (the secret is printed once), or revoke all."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.ANNOTATE)
        parser.add_argument("--days", type=int, default=DEFAULT_TOKEN_DAYS)
        parser.add_argument(
            "--revoke-all", action="store_true", help="revoke every token of the user instead"
        )

    def handle(self, username, name, scope, days, revoke_all, **_):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        if revoke_all:
            count = services.api_tokens_revoke_all(user=user)
            self.stdout.write(f"revoked {count} token(s) of {username}")
            return
        try:
            issued = services.api_token_create(
                user=user, name=name, scope=scope, expires_in_days=days
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.secret)
