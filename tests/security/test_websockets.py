"""Websocket consumers: anonymous, cross-site and foreign-project subscriptions are refused.

Every route in ``config.routing.websocket_urlpatterns`` is covered as it lands, through the
real ASGI application (origin validation, session authentication, URL routing, consumer):
- an anonymous connection is refused;
- a member of another project subscribing to this project's objects is refused;
- a member of the project is let in (the matrix of roles lives in the HTTP policy; a consumer
  that is for one capability only refuses the others, which the test reports but allows);
- a page on another site cannot open a socket with the user's cookies (cross-site websocket
  hijacking), on any path.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from config.asgi import application
from tests.security.routes import websocket_routes
from tests.security.world import build_world, missing_factories

ROUTES = websocket_routes()
pytestmark = pytest.mark.django_db(transaction=True)


def _cookie_for(user) -> bytes:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()


async def _connect(path: str, *, cookie: bytes | None, origin: bytes = b"http://testserver"):
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=5)
    except ValueError:
        return "no-route"
    except TimeoutError:
        return "denied"  # the consumer never accepted
    if connected:
        await communicator.disconnect()
    return "accepted" if connected else "denied"


def test_cross_site_websocket_hijacking_is_refused(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("ws-victim", password="pw")
    cookie = _cookie_for(user)
    paths = [route.url({p: 1 for p in route.params}) for route in ROUTES] or ["/ws/anything/"]
    for path in paths:
        outcome = asyncio.run(_connect(path, cookie=cookie, origin=b"https://evil.example"))
        assert outcome == "denied", path  # by the origin check, before any routing


def test_the_websocket_routes_under_test_are_the_platforms():
    # An empty list would turn the parametrized checks below into silent skips.
    assert ROUTES, "no websocket consumer found in config/routing.py"


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_websocket_subscriptions_are_scoped_to_the_users_projects(route):
    missing = missing_factories(route.params)
    if missing:
        pytest.fail(f"{route}: no object factory for {sorted(missing)} in tests/security/world.py")
    world = build_world()
    own = route.url(world.ids("own", "admin"))
    foreign = route.url(world.ids("foreign", "admin"))

    assert asyncio.run(_connect(own, cookie=None)) == "denied", "anonymous subscription"
    outsider = _cookie_for(world.users["outsider"])
    assert asyncio.run(_connect(own, cookie=outsider)) == "denied", "outsider subscribed"
    for role in ("annotator", "reviewer", "engineer", "admin"):
        cookie = _cookie_for(world.users[role])
        assert asyncio.run(_connect(foreign, cookie=cookie)) == "denied", f"{role}: foreign"
    admitted = [
        role
        for role in ("annotator", "reviewer", "engineer", "admin")
        if asyncio.run(_connect(own, cookie=_cookie_for(world.users[role]))) == "accepted"
    ]
    assert "admin" in admitted, f"{route}: not even the project's admin may subscribe"


RUN_ROUTES = [route for route in ROUTES if route.params == ["run_id"]]


def test_a_dropped_client_resyncs_to_the_true_state_when_it_reconnects():
    """A websocket message is a hint and the database is the truth: a client that was away
    while the run moved on gets the run's current state first thing after reconnecting."""
    assert RUN_ROUTES, "no training-run consumer in config/routing.py"
    from django.db.models import F

    from rlhf.models import TrainingRun

    world = build_world()
    run_id = world.ids("own", "admin")["run_id"]
    path = RUN_ROUTES[0].url({"run_id": run_id})
    cookie = _cookie_for(world.users["admin"])

    async def first_message() -> dict:
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)]
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()  # the client drops
        return message

    before = asyncio.run(first_message())
    # while it is away, the run moves on (as the worker would write it)
    TrainingRun.objects.filter(pk=run_id).update(
        status="running", revision=F("revision") + 1, progress={"step": 5, "total": 10}
    )
    after = asyncio.run(first_message())
    assert after["run"]["revision"] == before["run"]["revision"] + 1
    assert after["run"]["status"] == "running"
    assert after["run"]["progress"] == {"step": 5, "total": 10}
