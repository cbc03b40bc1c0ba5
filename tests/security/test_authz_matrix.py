"""The authorisation matrix: every route x method x role x own/foreign object.

Routes are discovered (``tests/security/routes.py``), so an endpoint merged later is in the
matrix without an edit here. For every case:

- anonymous callers are refused (401/403 for the API, a redirect to the login page for pages)
  and the database is unchanged;
- another project's objects give 404 or 403, the database is unchanged (a digest of every
  row of every table, before and after), and not one byte of the other project reaches the
  caller (cross-organisation IDOR, as in Label Studio's advisories);
- a member of the project gets what ``policy.py`` declares for its role: a refused role gets
  403/404 and changes nothing; an allowed one gets neither 401/403/404 nor a 5xx;
- an API token of each scope is let through only where the member's role AND the token's
  scope allow the call (``policy.token_scope_allows``), and a refused call changes nothing.
  The full product (API routes x roles x scopes) is ~1000 more cases, so each route is tried
  with every scope as an admin (where the scope is what refuses) and with every scope once
  more under a rotating role (a Latin square: every route meets every role and every scope);
- a page never accepts an API token (a token is for the API; pages need a session).
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.security import policy
from tests.security.routes import http_routes, openapi_operations, query_parameters
from tests.security.world import (
    ALL_ACTORS,
    FOREIGN_MARKER,
    PROJECT_ROLES,
    TOKEN_SCOPES,
    changed_tables,
    db_checksum,
    missing_factories,
)

OBJECT_PARAMS = {"project_id", "task_id", "label_id", "user_id"}


def _names_objects(route, method) -> bool:
    return bool(set(route.params) | set(query_parameters(route, method)))


def _cases():
    for route in http_routes():
        for method in route.methods:
            for actor in ALL_ACTORS:
                sides = ["own"]
                if actor in PROJECT_ROLES and _names_objects(route, method):
                    sides.append("foreign")
                for side in sides:
                    yield pytest.param(
                        route, method, actor, side, id=f"{route}-{method}-{actor}-{side}"
                    )


def _body(route, method, world, ids) -> dict:
    """A request that would succeed if allowed, so a missing check cannot hide behind a 400."""
    json = {
        ("api-projects", "post"): {"name": "A new project"},
        ("api-project", "patch"): {"name": "Renamed"},
        ("api-members", "post"): {"username": "spare-member", "role": "reviewer"},
        ("api-member", "patch"): {"group": "matrix"},
        ("api-label-submit", "post"): {"payload": {"choice": "A", "strength": "clear"}},
        ("api-task-skip", "post"): {"reason": "matrix"},
        ("api-label", "patch"): {"payload": {"choice": "B", "strength": "strong"}},
        ("api-token", "post"): {"username": "annotator-own", "password": "wrong"},
        ("api-tokens", "post"): {"name": "matrix", "scope": "read"},
        ("api-invitation", "post"): {"accept": True},
        ("api-snapshots", "post"): {"name": "matrix"},
        ("api-snapshot-exports", "post"): {"name": "matrix", "shape": "preference"},
        ("api-model-transition", "post"): {"to_state": "rejected", "reason": "matrix"},
        ("api-model-alias", "put"): {"version_id": ids.get("version_id"), "reason": "matrix"},
        ("api-model-alias-rollback", "post"): {"reason": "matrix"},
        ("api-model-generate", "post"): {"prompt_ids": [1]},
        ("api-model-register", "post"): {"folder": "/nonexistent", "name": "matrix"},
        ("api-model-register-base", "post"): {"folder": "/nonexistent", "name": "matrix"},
        ("api-review-task", "post"): {"outcome": "A", "reason": "matrix"},
        ("api-eval-prompts", "post"): {"prompts": [[{"role": "user", "content": "pinned"}]]},
        ("api-review-settings", "patch"): {"review_min_labels": 3},
        ("api-project-settings", "patch"): {"quality": {"gold_rate": 0.1}},
    }.get((route.name, method), {})
    if route.name == "api-imports":
        upload = SimpleUploadedFile("rows.jsonl", b'{"prompt": "imported by the matrix"}\n')
        return {"data": {"file": upload, "kind": "prompts"}}
    if route.name == "frontend:project-manage" and method == "post":
        form = {"action": "settings", "name": "Renamed", "overlap": "2", "lease_seconds": "600"}
        return {"data": {**form, "task_kinds": ["pairwise"], "guidelines": "g"}}
    if route.name == "frontend:invitation" and method == "post":
        return {"data": {"answer": "accept"}}
    if route.name == "frontend:login" and method == "post":
        return {"data": {"username": "annotator-own", "password": "wrong"}}
    if (route.is_api or route.is_gateway) and method != "get":
        return {"data": json, "content_type": "application/json"}
    return {}


def _client(world, actor) -> Client:
    client = Client()
    if actor != "anonymous":
        client.force_login(world.users[actor])  # before the digest: it sets last_login
    return client


def _request(client, route, method, world, actor, side):
    ids = world.ids(side, actor)
    url = route.url(ids)
    query = {q: ids[q] for q in query_parameters(route, method) if q in ids}
    kwargs = _body(route, method, world, ids)
    if method == "get":
        return getattr(client, method)(url, query)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return getattr(client, method)(url, **kwargs)


def _error_code(response) -> str | None:
    try:
        return response.json().get("error")
    except ValueError:
        return None


def _refused(response, route) -> bool:
    if response.status_code in (401, 403, 404, 405):
        return True
    return (
        not route.is_api
        and response.status_code == 302
        and response["Location"].startswith("/login/")
    )


def _allowed(rule, actor, side, route, method, *, token: bool = False) -> bool:
    """True where the policy lets the call through (no refusal to check)."""
    if rule == policy.PUBLIC:
        return True
    if actor == "anonymous" or side == "foreign":
        return False
    if actor == "outsider":
        return not _names_objects(route, method) and rule == policy.AUTHENTICATED
    if rule is None or rule == policy.STAFF:
        return False
    if route.is_gateway and not token:
        return False  # a session alone never reaches the gateway (the token matrix tries keys)
    return rule == policy.AUTHENTICATED or actor in rule


@pytest.mark.parametrize(("route", "method", "actor", "side"), list(_cases()))
def test_authorisation_matrix(world, db, route, method, actor, side):
    missing = missing_factories(route.params)
    if missing:
        pytest.fail(f"{route}: no object factory for {sorted(missing)} in tests/security/world.py")
    rule = policy.POLICY.get((route.name, method))
    # Digests (the costly part) only where a refusal is expected: an allowed call may write.
    allowed = _allowed(rule, actor, side, route, method)

    client = _client(world, actor)
    before = None if allowed else db_checksum()
    response = _request(client, route, method, world, actor, side)
    after = None if allowed else db_checksum()
    status = response.status_code
    body = response.content.decode("utf-8", "replace") if not response.streaming else ""

    assert status < 500, f"{route} {method} as {actor}: {status}"
    if actor in (*PROJECT_ROLES, "anonymous") or _names_objects(route, method):
        assert FOREIGN_MARKER not in body, f"{route} {method} leaked another project to {actor}"

    if actor == "anonymous":
        if rule == policy.PUBLIC:
            return
        assert _refused(response, route), f"{route} {method}: anonymous got {status}"
        if route.is_api:
            assert status in (401, 403, 405)
        assert changed_tables(before, after) == []
        return

    foreign = side == "foreign" or (actor == "outsider" and _names_objects(route, method))
    if foreign:
        if rule == policy.PUBLIC:
            return
        assert status in (403, 404, 405), f"{route} {method}: {actor} reached another project"
        assert changed_tables(before, after) == [], f"{route} {method}: refused but wrote"
        return

    if rule is None or actor == "outsider":
        return  # undeclared routes fail test_every_route_declares_a_policy instead
    if allowed:
        assert status not in (401, 403), f"{route} {method}: {actor} was refused ({status})"
        # A 404 about something else ("no report computed yet") is an answer, not a refusal.
        assert status != 404 or _error_code(response) not in (None, "not_found"), (
            f"{route} {method}: {actor} was refused (404)"
        )
    else:
        assert status in (403, 404, 405), f"{route} {method}: {actor} was allowed ({status})"
        assert changed_tables(before, after) == [], f"{route} {method}: refused but wrote"


def _token_cases():
    api_calls = [(r, m) for r in http_routes() if r.is_api or r.is_gateway for m in r.methods]
    for index, (route, method) in enumerate(api_calls):
        for shift, scope in enumerate(TOKEN_SCOPES):
            rotating = PROJECT_ROLES[(index + shift) % len(PROJECT_ROLES)]
            for actor in sorted({"admin", rotating}):
                yield pytest.param(
                    route, method, actor, scope, id=f"{route}-{method}-{actor}-token:{scope}"
                )


@pytest.mark.parametrize(("route", "method", "actor", "scope"), list(_token_cases()))
def test_authorisation_matrix_with_api_tokens(world, db, route, method, actor, scope):
    rule = policy.POLICY.get((route.name, method))
    if rule is None:
        return  # test_every_route_declares_a_policy fails instead
    allowed = _allowed(rule, actor, "own", route, method, token=True) and (
        rule == policy.PUBLIC or policy.token_scope_allows(scope, route.name, method)
    )
    client = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[(actor, scope)]}")
    before = None if allowed else db_checksum()
    response = _request(client, route, method, world, actor, "own")
    after = None if allowed else db_checksum()
    status = response.status_code
    body = response.content.decode("utf-8", "replace") if not response.streaming else ""

    assert status < 500, f"{route} {method} with a {scope} token of {actor}: {status}"
    assert FOREIGN_MARKER not in body, f"{route} {method} leaked another project to {actor}"
    if allowed:
        assert status not in (401, 403), f"{route} {method}: {actor}'s {scope} token refused"
        assert status != 404 or _error_code(response) not in (None, "not_found"), (
            f"{route} {method}: {actor}'s {scope} token was refused (404)"
        )
    else:
        assert status in (403, 404, 405), f"{route} {method}: {actor}'s {scope} token allowed"
        assert changed_tables(before, after) == [], f"{route} {method}: refused but wrote"


@pytest.mark.parametrize(
    "route",
    [r for r in http_routes() if not (r.is_api or r.is_gateway) and "get" in r.methods],
    ids=str,
)
def test_a_page_never_accepts_an_api_token(world, db, route):
    if policy.POLICY.get((route.name, "get")) == policy.PUBLIC:
        return
    client = Client(HTTP_AUTHORIZATION=f"Token {world.tokens[('admin', 'admin')]}")
    response = _request(client, route, "get", world, "admin", "own")
    assert _refused(response, route), f"{route}: a token opened a page ({response.status_code})"


def test_every_route_declares_a_policy():
    undeclared = sorted(
        f"{route.name} {method}"
        for route in http_routes()
        for method in route.methods
        if (route.name, method) not in policy.POLICY
    )
    assert undeclared == [], (
        "routes without a line in tests/security/policy.py (who may call them?): "
        + ", ".join(undeclared)
    )


def test_every_path_parameter_has_an_object_factory():
    missing = {p for route in http_routes() for p in missing_factories(route.params)}
    assert missing == set(), f"add factories to tests/security/world.py for {sorted(missing)}"


def test_the_openapi_schema_and_the_url_configuration_name_the_same_api_operations():
    """An API route missing from the schema escapes the fuzzer; a schema entry missing from
    the URLs is a lie. Both directions, so the matrix and the fuzzer see the same API."""
    from_urls = {
        (route.openapi_path, method)
        for route in http_routes()
        if route.is_api and route.name != "api-schema"
        for method in route.methods
    }
    documented = openapi_operations()
    assert from_urls - documented == set(), "API routes missing from the OpenAPI schema"
    assert documented - from_urls == set(), "schema operations that no route serves"


def test_the_admin_site_refuses_anyone_who_is_not_staff(world, db):
    for actor in ("anonymous", "admin", "outsider"):
        client = Client()
        if actor != "anonymous":
            client.force_login(world.users[actor])
        response = client.get("/admin/")
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
