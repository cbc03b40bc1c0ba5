"""An enforcing Content-Security-Policy on every HTML response, strict enough to matter."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.security.routes import http_routes
from tests.security.world import PROJECT_ROLES

REQUIRED = {
    "default-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
NEVER = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "data:", "http:", "https:")


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def _html_responses(world):
    for actor in ("anonymous", *PROJECT_ROLES):
        client = Client()
        if actor != "anonymous":
            client.force_login(world.users[actor])
        for route in http_routes():
            if route.is_api or "get" not in route.methods:
                continue
            response = client.get(route.url(world.ids("own", actor)))
            yield f"{route} as {actor}", response
        for url in ("/no-such-page/", "/projects/999999/manage/", "/admin/login/"):
            yield f"{url} as {actor}", client.get(url)


def test_every_html_response_carries_an_enforcing_csp(world, db):
    seen = 0
    for where, response in _html_responses(world):
        if not response.get("Content-Type", "").startswith("text/html"):
            continue
        seen += 1
        assert "Content-Security-Policy-Report-Only" not in response, where
        header = response.get("Content-Security-Policy")
        assert header, f"{where}: no Content-Security-Policy"
        directives = _directives(header)
        for name, value in REQUIRED.items():
            assert directives.get(name) == [value], f"{where}: {name} is {directives.get(name)}"
        for name in ("script-src", "default-src", "connect-src", "object-src"):
            loose = set(directives.get(name, [])) & set(NEVER)
            assert not loose, f"{where}: {name} allows {loose}"
        assert response["X-Content-Type-Options"] == "nosniff"
    assert seen >= 10


@pytest.mark.parametrize("url", ["/api/me/", "/api/projects/"])
def test_api_json_is_never_sniffed_as_html(world, db, url):
    client = Client()
    client.force_login(world.users["admin"])
    response = client.get(url)
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
