"""What an unknown or refused URL answers when DEBUG is off (``handler404``/``handler403``).

Pages get the app's own ``404.html``/``403.html`` (styled, a link home, no list of routes);
anything under ``/api/`` keeps answering the JSON errors its endpoints answer
(``config.api.exception_handler``), also for a URL that matches no endpoint.
"""

from django.http import HttpResponse
from django.views import defaults
from rest_framework.exceptions import PermissionDenied
from rest_framework.renderers import JSONRenderer

from config.api import NOT_FOUND_BODY

API_PREFIX = "/api/"


def _json(body: dict, status: int) -> HttpResponse:
    # Rendered as DRF renders the endpoints' errors, byte for byte.
    return HttpResponse(JSONRenderer().render(body), status=status, content_type="application/json")


def page_not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return _json(NOT_FOUND_BODY, 404)
    return defaults.page_not_found(request, exception)


def permission_denied(request, exception):
    if request.path.startswith(API_PREFIX):
        # The body an endpoint's refused permission answers (config.api.exception_handler).
        body = {
            "error": PermissionDenied.default_code,
            "detail": str(PermissionDenied.default_detail),
        }
        return _json(body, 403)
    return defaults.permission_denied(request, exception)
