"""DRF authentication by API token (``Authorization: Token tdm_...``), scope enforced here.

The scope is checked in the authentication step, not in a permission class, so that no view
can drop it by setting its own ``permission_classes``: a token that may not make this call
is refused before the view runs. The rule itself is ``annotation.tokens.scope_allows``.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.crypto import constant_time_compare
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from annotation.tokens import ApiToken, scope_allows, token_digest

KEYWORD = "Token"
LAST_USED_PRECISION_SECONDS = 60  # write last_used_at at most once a minute per token


def token_check(secret: str) -> ApiToken:
    """The live token for ``secret``, or AuthenticationFailed (one message for every cause)."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(secret), revoked_at__isnull=True)
        .first()
    )
    now = timezone.now()
    if (
        token is None
        or token.expires_at <= now
        or not token.user.is_active
        or not constant_time_compare(token.password_fingerprint, token.user.get_session_auth_hash())
    ):
        raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > (
        LAST_USED_PRECISION_SECONDS
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header.") from exc
        token = token_check(secret)
        match = request._request.resolver_match
        route_name = match.url_name if match is not None else None
        if not scope_allows(token.scope, route_name, request.method):
            raise exceptions.PermissionDenied(
                f"This token's scope ({token.scope}) does not allow this call."
            )
        return token.user, token

    def authenticate_header(self, request):
        return KEYWORD


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names this authentication (``Authorization: Token tdm_...``)."""

    target_class = "annotation.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API token, prefixed with 'Token ' (scoped, expiring).",
        }
