"""API-wide behaviour shared by every app's endpoints."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError
from config.untrusted import json_value_problem


class CheckedJSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing what no database stores (see ``config.untrusted``) with a
    400 that names the field, and JSON nested past the decoder's stack with a 400 (it was a
    RecursionError, a 500 with a traceback under DEBUG, even on the anonymous token URL)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from None
        problem = json_value_problem(data)
        if problem:
            field, reason = problem
            raise exceptions.ParseError(
                {"detail": f"{field or 'the body'} {reason}", "field": field or "body"}
            )
        return data


class CheckedJSONField(serializers.JSONField):
    """DRF's JSONField with the JSON parser's checks, for JSON sent as a form field (decoded
    here, never seen by the parser: a lone surrogate in it failed PostgreSQL's json input)."""

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            raise serializers.ValidationError("nested too deeply") from None
        problem = json_value_problem(value)
        if problem:
            field, reason = problem
            raise serializers.ValidationError(f"{field or 'the value'} {reason}")
        return value


logger = logging.getLogger(__name__)

# Raised by Python or the database driver on values that got past validation (a JSON string
# inside a form field, a number in a query string); a 400, never a 500.
_INPUT_ERRORS = {
    RecursionError: "the input is nested too deeply",
    OverflowError: "a number in the request is out of range",
    UnicodeEncodeError: "the input contains a lone surrogate (an unpaired \\ud800-\\udfff)",
}

# Every API 404 says the same, whatever was not found (foreign ids are 404s too).
NOT_FOUND_BODY = {"error": "not_found", "detail": "Not found."}


def exception_handler(exc, context):
    """Map domain errors raised by services to clear JSON errors with stable codes."""
    if isinstance(exc, DomainError):
        body = {"error": exc.code, "detail": exc.message}
        if exc.extra:
            body.update(exc.extra)
        response = Response(body, status=exc.http_status)
        if "retry_after" in exc.extra:
            response["Retry-After"] = str(exc.extra["retry_after"])
        return response
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif type(exc) in _INPUT_ERRORS:
        # Logged with its traceback: the specific checks come first, so one reaching here may
        # be a server bug worth finding, not only hostile input.
        logger.warning("%s answered as a 400", type(exc).__name__, exc_info=exc)
        exc = exceptions.ValidationError({"detail": _INPUT_ERRORS[type(exc)]})
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "error" not in response.data:
        code = getattr(exc, "default_code", "error")
        response.data = {"error": code, **response.data}
    if response is None:
        return None
    if response.status_code == status.HTTP_404_NOT_FOUND:
        response.data = dict(NOT_FOUND_BODY)
    return response
