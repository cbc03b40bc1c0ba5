"""No outbound request from user input (SSRF through URL import and webhooks).

Tandem has no URL import and no webhooks. Should one be added, it must be admin-enabled and
refuse loopback, private, link-local and metadata addresses, after redirects and DNS changes;
until then the proof is that no endpoint reaches out, whatever URLs a request carries: every
discovered API operation is called with every string field set to an internal URL while the
``outbound`` guard (tests/security/conftest.py) refuses and records any connection or DNS
look-up for a non-loopback address.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.security.routes import http_routes, openapi_schema

REPO = Path(__file__).resolve().parents[2]
TARGETS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.1:6379/",
    "http://[fd00::1]/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:5432/_",
    "http://example.invalid/redirect-to-localhost",
]


def _fill(schema: dict, components: dict, url: str, depth: int = 0):
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    kind = schema.get("type")
    if depth > 4:
        return url
    if kind == "object" or "properties" in schema:
        return {
            name: _fill(prop, components, url, depth + 1)
            for name, prop in schema.get("properties", {}).items()
        } | {"url": url, "webhook": url, "callback_url": url}
    if kind == "array":
        return [_fill(schema.get("items", {}), components, url, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    return url


def _operations():
    schema = openapi_schema()
    components = schema.get("components", {}).get("schemas", {})
    for route in http_routes():
        if not route.is_api:
            continue
        for method in route.methods:
            op = schema["paths"].get(route.openapi_path, {}).get(method, {})
            content = op.get("requestBody", {}).get("content", {})
            body_schema = next(iter(content.values()), {}).get("schema", {}) if content else {}
            yield route, method, body_schema, components


def test_ssrf_through_url_import_and_webhooks_no_endpoint_fetches_a_user_supplied_url(
    world, db, outbound
):
    client = Client()
    client.force_login(world.users["admin"])
    ids = world.ids("own", "admin")
    calls = 0
    for url in TARGETS:
        for route, method, body_schema, components in _operations():
            path = route.url(ids) + f"?url={url}&next={url}&callback={url}"
            body = _fill(body_schema, components, url) if body_schema else {"url": url}
            if route.name == "api-imports":
                rows = [{"prompt": url, "source": url, "metadata": {"url": url, "image": url}}]
                upload = SimpleUploadedFile(
                    "urls.jsonl", "\n".join(json.dumps(r) for r in rows).encode()
                )
                response = client.post(path, {"file": upload, "kind": "prompts"})
            elif method == "get":
                response = client.get(path)
            else:
                response = getattr(client, method)(path, body, content_type="application/json")
            assert response.status_code < 500, f"{route} {method}: {response.status_code}"
            calls += 1
    assert calls >= len(TARGETS) * 10
    assert outbound.attempts == []


def test_the_outbound_guard_catches_a_forged_request(outbound):
    """Guard for the guard: a connection to an internal address is refused and recorded."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("169.254.169.254", 80), timeout=1)
    with pytest.raises(ConnectionRefusedError):
        socket.getaddrinfo("metadata.google.internal", 80)
    assert len(outbound.attempts) == 2
    outbound.attempts.clear()


HTTP_CLIENTS = re.compile(
    r"^\s*(import|from)\s+(requests|httpx|aiohttp|urllib3|pycurl|http\.client)\b"
    r"|urllib\.request|urlopen\(",
    re.M,
)


# The one exception: the serving gateway forwards to, and health-checks, the inference engines
# ``manage.py serve`` started. Their address (``ServingEngine.url``) is written by the
# supervisor from its own host and port, never taken from a request.
HTTP_CLIENT_ALLOWED = {"models_registry/serving/engines.py", "models_registry/serving/gateway.py"}


def test_no_server_code_carries_an_http_client():
    """The web, worker and engine code import no HTTP client: nothing there can fetch a URL.
    (Benchmarks and tests may; they are clients of the platform.)"""
    found = []
    for folder in ("config", "annotation", "rlhf", "models_registry", "frontend"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if str(path.relative_to(REPO)) in HTTP_CLIENT_ALLOWED:
                continue
            for match in HTTP_CLIENTS.finditer(path.read_text(errors="replace")):
                found.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert found == []
