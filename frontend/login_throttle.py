"""Login throttling that holds under concurrent attempts, for the login page and the API token.

Each attempt first *reserves* a slot with one atomic statement (an upsert that increments
and returns the count), and only then checks the password. Concurrent attempts therefore
cannot all pass a read-then-check: with a limit of 10, exactly 10 guesses reach the password
check, whatever the concurrency. A correct password clears the account's counter and gives
back its slot on the address's counter (so a valid account cannot reset the address's
count). Counters live in the database, so this works with any number of web processes and
without Redis; a window expires ``TANDEM_LOGIN_WINDOW_SECONDS`` after its first attempt.

Wired in as the authentication backend, so every caller of ``django.contrib.auth
.authenticate`` (the login page, the admin login, ``/api/auth/token/``) is throttled.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.db.models import F
from django.utils import timezone

from config.errors import TooManyAttempts
from frontend.models import LoginThrottle


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _reserve(key: str, now) -> int:
    """Count one more attempt for ``key`` and return the count, atomically."""
    table = connection.ops.quote_name(LoginThrottle._meta.db_table)
    expired_before = now - timedelta(seconds=settings.TANDEM_LOGIN_WINDOW_SECONDS)
    sql = (
        f"INSERT INTO {table} (key, attempts, window_start) VALUES (%s, 1, %s) "  # noqa: S608
        f"ON CONFLICT (key) DO UPDATE SET "
        f"attempts = CASE WHEN {table}.window_start < %s THEN 1 "
        f"ELSE {table}.attempts + 1 END, "
        f"window_start = CASE WHEN {table}.window_start < %s THEN excluded.window_start "
        f"ELSE {table}.window_start END "
        f"RETURNING attempts"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, now, expired_before, expired_before])
        return cursor.fetchone()[0]


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _is_trusted(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request) -> str:
    """The address a login attempt is counted under.

    REMOTE_ADDR, unless it is one of ``TANDEM_TRUSTED_PROXIES``: then the right-most
    X-Forwarded-For entry that is not a trusted proxy. Each proxy appends the address it saw,
    so entries right of the client's are the proxies' own; anything left of it was written
    by the client and is never believed. With no trusted proxies (the default) the header is
    ignored: a client could otherwise pick a fresh address for every guess."""
    meta = getattr(request, "META", None) or {}
    remote = meta.get("REMOTE_ADDR") or "unknown"
    networks = _networks(tuple(settings.TANDEM_TRUSTED_PROXIES))
    if not networks or not _is_trusted(remote, networks):
        return remote
    for entry in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        entry = entry.strip()
        if entry and not _is_trusted(entry, networks):
            return entry
    return remote


def login_attempt_begin(*, username: str, request) -> tuple[str, str]:
    """Reserve an attempt for the account and the address; refuse when either is spent."""
    now = timezone.now()
    user_key = _key("user", (username or "").casefold())
    address_key = _key("ip", client_address(request))
    per_user = _reserve(user_key, now)
    per_address = _reserve(address_key, now)
    if per_user > settings.TANDEM_LOGIN_MAX_FAILURES_PER_USER or (
        per_address > settings.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS
    ):
        minutes = max(1, settings.TANDEM_LOGIN_WINDOW_SECONDS // 60)
        raise TooManyAttempts(
            f"Too many login attempts. Try again in {minutes} minutes.",
            retry_after=settings.TANDEM_LOGIN_WINDOW_SECONDS,
        )
    return user_key, address_key


def login_attempt_succeeded(*, user_key: str, address_key: str) -> None:
    LoginThrottle.objects.filter(key=user_key).delete()
    LoginThrottle.objects.filter(key=address_key, attempts__gt=0).update(attempts=F("attempts") - 1)


class ThrottledModelBackend(ModelBackend):
    """Django's ModelBackend behind the throttle. ``TooManyAttempts`` is not a
    PermissionDenied on purpose: it must reach the view and become a 429, not a silent
    "wrong password"."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field())
        if username is None or password is None:
            return None
        keys = login_attempt_begin(username=username, request=request)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_attempt_succeeded(user_key=keys[0], address_key=keys[1])
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
