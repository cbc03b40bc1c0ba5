"""Every HTTP route and websocket route the platform serves, discovered, never listed by hand.

HTTP routes come from the URL configuration (``django.urls.get_resolver()``); the methods of
an API route come from its view class and are cross-checked against the drf-spectacular
OpenAPI schema. Websocket routes come from ``config.routing.websocket_urlpatterns``. A route
that lands later is covered the moment it is merged: the matrix asks only that each path
parameter has an object factory (``tests/security/world.py``) and each route a declared
policy (``tests/security/policy.py``), and fails naming what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from django.urls import URLPattern, URLResolver, get_resolver

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
# Routes the matrix leaves to Django's own tests: the admin (staff only, checked apart in
# test_authz_matrix) and static files.
SKIPPED_PREFIXES = ("admin/", "static/")


@dataclass(frozen=True)
class Route:
    template: str  # "api/projects/<int:project_id>/"
    name: str  # "api-project" or "frontend:annotate"
    callback: object
    methods: tuple[str, ...]

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in PARAM.finditer(self.template)]

    @property
    def is_api(self) -> bool:
        return self.template.startswith("api/")

    @property
    def is_gateway(self) -> bool:
        """The model gateway: API keys only, never a session (models_registry.serving)."""
        return self.template.startswith("gateway/")

    @property
    def openapi_path(self) -> str:
        return "/" + PARAM.sub(lambda m: "{" + m.group("name") + "}", self.template)

    def url(self, values: dict) -> str:
        return "/" + PARAM.sub(lambda m: str(values[m.group("name")]), self.template)

    def __str__(self):
        return f"{self.name or self.template}"


def _methods_of(callback) -> tuple[str, ...]:
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is not None:
        allowed = [m for m in getattr(view_class, "http_method_names", HTTP_METHODS)]
        return tuple(m for m in HTTP_METHODS if m in allowed and hasattr(view_class, m))
    # Function views do not say which methods they serve: try GET and POST; a 405 is a
    # refusal like any other, and the matrix checks that it changed nothing.
    return ("get", "post")


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}{entry.namespace}:"
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            template = prefix + str(entry.pattern)
            if template.startswith(SKIPPED_PREFIXES):
                continue
            if "(?P" in template or "^" in template:
                continue  # regex routes (none today) would need their own sample values
            name = f"{namespace}{entry.name}" if entry.name else template
            yield Route(template, name, entry.callback, _methods_of(entry.callback))


@cache
def http_routes() -> tuple[Route, ...]:
    return tuple(_walk(get_resolver().url_patterns))


@cache
def openapi_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def openapi_operations() -> set[tuple[str, str]]:
    paths = openapi_schema().get("paths", {})
    return {
        (path, method) for path, ops in paths.items() for method in ops if method in HTTP_METHODS
    }


def query_parameters(route: Route, method: str) -> list[str]:
    op = openapi_schema().get("paths", {}).get(route.openapi_path, {}).get(method, {})
    return [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]


@dataclass(frozen=True)
class WebsocketRoute:
    template: str
    consumer: object

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in PARAM.finditer(self.template)]

    def url(self, values: dict) -> str:
        return "/" + PARAM.sub(lambda m: str(values[m.group("name")]), self.template)

    def __str__(self):
        return self.template


def websocket_routes() -> tuple[WebsocketRoute, ...]:
    from config.routing import websocket_urlpatterns

    out = []
    for entry in websocket_urlpatterns:
        template = str(entry.pattern)
        out.append(WebsocketRoute(template.lstrip("^").rstrip("$"), entry.callback))
    return tuple(out)
