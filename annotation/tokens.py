"""API tokens: stored as a hash, named, scoped, expiring, dead once the password changes.

The secret (``tdm_`` + 40 random URL-safe characters, 240 bits) is shown once, when the token
is created; the database keeps its SHA-256 (a fast hash is enough for a high-entropy secret:
there is nothing to brute-force) and a short non-secret prefix to name it in lists.

A token carries the password fingerprint of its user at creation (Django's session auth
hash: an HMAC of the stored password hash). Authentication compares it with the user's
current one, so a password changed by any path (the admin form, ``changepassword``,
``set_password`` in a shell, a reset) ends every token issued before it, as Django ends
sessions: no signal, no hook to forget.

A scope narrows, never widens, what the user's project role allows (the role's own checks
still run in the views). ``scope_allows`` is the one rule, keyed by URL name and method:

- ``read``: safe methods only (GET, HEAD, OPTIONS) on every API route;
- ``annotate``: read, plus claim, submit, skip, heartbeat and label edits;
- ``train``: read, plus snapshots and their exports, runs (launch, cancel, retry), and the
  engineer's model work (register a run's model, generate);
- ``admin``: everything the user's role allows (members, settings, imports, reviews, tokens);
- ``serve``: the model gateway only (``/gateway/<project>/v1/...``: chat completions, models,
  feedback), nothing else, not even reads (but the public schema): the key an application
  embeds. The gateway takes
  ``serve`` and ``admin`` tokens; the narrower data scopes cannot call it.

A write route not named below is refused to every scope but ``admin``: a new endpoint is
closed to narrow tokens until someone decides otherwise here.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

TOKEN_PREFIX = "tdm_"  # noqa: S105 (a marker, not a secret)
DISPLAY_PREFIX_LENGTH = 12  # "tdm_" + 8 characters of the secret: names a token, proves nothing
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenScope(models.TextChoices):
    READ = "read", "Read only"
    ANNOTATE = "annotate", "Annotate"
    TRAIN = "train", "Train"
    ADMIN = "admin", "Admin (everything your role allows)"
    SERVE = "serve", "Serve (the model gateway only)"


# The gateway's routes (models_registry.serving.urls): only ``serve`` and ``admin`` tokens.
GATEWAY_ROUTES = frozenset({"gateway-chat-completions", "gateway-models", "gateway-feedback"})


SCOPE_WRITES: dict[str, frozenset[tuple[str, str]]] = {
    TokenScope.READ: frozenset(),
    TokenScope.ANNOTATE: frozenset(
        {
            ("api-task-next", "POST"),
            ("api-label-submit", "POST"),
            ("api-task-skip", "POST"),
            ("api-task-undo", "POST"),
            ("api-heartbeat", "POST"),
            ("api-label", "PATCH"),
        }
    ),
    TokenScope.TRAIN: frozenset(
        {
            ("api-snapshots", "POST"),
            ("api-snapshot-exports", "POST"),
            ("api-runs", "POST"),
            ("api-run-cancel", "POST"),
            ("api-run-retry", "POST"),
            ("api-model-register", "POST"),
            ("api-model-generate", "POST"),
            ("api-proposals", "POST"),
            ("api-model-bundle", "POST"),
        }
    ),
}


def scope_allows(scope: str, route_name: str | None, method: str) -> bool:
    method = method.upper()
    if scope == TokenScope.ADMIN:
        return True
    if scope == TokenScope.SERVE and route_name == "api-schema" and method in SAFE_METHODS:
        return True  # the API's public description: anyone may read it, key or not
    if scope == TokenScope.SERVE or route_name in GATEWAY_ROUTES:
        return scope == TokenScope.SERVE and route_name in GATEWAY_ROUTES
    if scope not in SCOPE_WRITES:
        return False
    if method in SAFE_METHODS:
        return True
    return (route_name, method) in SCOPE_WRITES[scope]


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=TokenScope.choices)
    prefix = models.CharField(max_length=DISPLAY_PREFIX_LENGTH, db_index=True)
    digest = models.CharField(max_length=64, unique=True, help_text="sha256 of the secret")
    password_fingerprint = models.CharField(
        max_length=128, help_text="The user's session auth hash when the token was created."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "annotation"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope__in=[s.value for s in TokenScope]),
                name="api_token_scope_valid",
            ),
        ]

    def __str__(self):
        return f"{self.prefix}… ({self.name}, {self.scope})"
