"""API tokens: create (the secret is returned once), revoke, revoke all of a user's."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from annotation.tokens import (
    DISPLAY_PREFIX_LENGTH,
    TOKEN_PREFIX,
    ApiToken,
    TokenScope,
    token_digest,
)
from config.errors import ValidationFailed

DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 365


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # shown once; only its digest is stored


def api_token_create(
    *, user, name: str, scope: str, expires_in_days: int = DEFAULT_TOKEN_DAYS
) -> IssuedToken:
    errors = []
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors.append("name: 1 to 100 characters")
    if scope not in TokenScope.values:
        errors.append(f"scope must be one of {TokenScope.values}")
    if not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        errors.append(f"expires_in_days must be a whole number from 1 to {MAX_TOKEN_DAYS}")
    if errors:
        raise ValidationFailed("; ".join(errors), code="invalid_token_request")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        scope=scope,
        prefix=secret[:DISPLAY_PREFIX_LENGTH],
        digest=token_digest(secret),
        password_fingerprint=user.get_session_auth_hash(),
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    return IssuedToken(token=token, secret=secret)


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


@transaction.atomic
def api_tokens_revoke_all(*, user) -> int:
    """Every live token of ``user`` revoked (a password change does this implicitly)."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
