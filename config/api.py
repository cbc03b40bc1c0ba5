"""API-wide behaviour shared by every app's endpoints."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError

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
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "error" not in response.data:
        code = getattr(exc, "default_code", "error")
        response.data = {"error": code, **response.data}
    if response is None:
        return None
    if response.status_code == status.HTTP_404_NOT_FOUND:
        response.data = dict(NOT_FOUND_BODY)
    return response
