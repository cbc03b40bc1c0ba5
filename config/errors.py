"""Errors raised by services; the API and the pages turn them into clear messages."""


class DomainError(Exception):
    """A refused action. ``code`` is stable and machine-readable; ``message`` is for people."""

    http_status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, **extra):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.extra = extra


class ValidationFailed(DomainError):
    http_status = 400
    code = "invalid"


class Conflict(DomainError):
    http_status = 409
    code = "conflict"


class NotFound(DomainError):
    http_status = 404
    code = "not_found"


class Forbidden(DomainError):
    http_status = 403
    code = "forbidden"


class Gone(DomainError):
    """The thing exists but is withdrawn for good (a snapshot holding a sealed text)."""

    http_status = 410
    code = "gone"


class Unprocessable(DomainError):
    http_status = 422
    code = "unprocessable"


class PayloadTooLarge(DomainError):
    http_status = 413
    code = "too_large"


class TooManyAttempts(DomainError):
    """Login throttled: too many recent attempts for this account or from this address."""

    http_status = 429
    code = "too_many_attempts"
