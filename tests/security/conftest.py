"""Security suite fixtures: the attacked world, and a guard that no request leaves the host."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from django.db import transaction

from tests.security.world import build_world


class OutboundRecorder:
    """Records (and refuses) every connection or DNS look-up for a non-loopback address.

    The whole suite runs in-process or against 127.0.0.1 (PostgreSQL, Redis, the live test
    server, Chromium's DevTools pipe); anything else is a server-side request forged from
    user input, which is exactly what the suite must never see.
    """

    def __init__(self):
        self.attempts: list[str] = []

    @staticmethod
    def _is_local(host) -> bool:
        if host in ("localhost", "testserver", "", None):
            return True
        try:
            address = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return False  # a name: resolving it is already an outbound request
        return address.is_loopback or address.is_unspecified

    def check(self, what: str, host) -> None:
        if not self._is_local(host):
            self.attempts.append(f"{what} {host}")
            raise ConnectionRefusedError(f"the security suite refuses outbound {what} to {host}")


@pytest.fixture(autouse=True)
def outbound(monkeypatch):
    """Autouse: any test in tests/security that makes the platform reach out fails."""
    recorder = OutboundRecorder()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            recorder.check("connect", address[0])
        return real_connect(sock, address)

    def connect_ex(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            recorder.check("connect", address[0])
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        recorder.check("resolve", host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield recorder
    assert recorder.attempts == [], f"outbound requests from the platform: {recorder.attempts}"


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once per module inside a transaction that is rolled back at the module's end;
    each test runs in a savepoint inside it (pytest-django's ``db``), so tests stay isolated
    without rebuilding the world."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


# The browser fixtures (Debian's Chromium through Playwright) are shared with the frontend
# tests; re-exported here so the hostile-text tests can use them.
from tests.frontend.conftest import browser, login, page  # noqa: E402, F401
