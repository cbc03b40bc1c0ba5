"""What the client raises: one exception per kind of refusal, each naming the fields at fault."""

from __future__ import annotations


class TandemError(Exception):
    """Anything the client could not do."""


class ApiError(TandemError):
    """The server refused the request (a 4xx or 5xx).

    ``code`` is the API's stable machine-readable code (``snapshot_not_ready``, ``invalid``...),
    ``detail`` its sentence for people, ``fields`` ``{field: problem}`` for the request fields
    at fault (empty when the refusal is not about one field), ``body`` the parsed answer."""

    def __init__(self, status: int, method: str, path: str, body):
        self.status = status
        self.method = method
        self.path = path
        self.body = body
        data = body if isinstance(body, dict) else {}
        self.code = str(data.get("error") or f"http_{status}")
        self.detail = str(data.get("detail") or (body if isinstance(body, str) else "") or "")
        self.fields = _fields(data)
        text = f"{method} {path}: {status} {self.code}"
        if self.detail:
            text += f": {self.detail}"
        if self.fields:
            text += " (" + "; ".join(f"{k}: {v}" for k, v in self.fields.items()) + ")"
        super().__init__(text)


def _fields(data: dict) -> dict[str, str]:
    """The API names fields in two shapes: a domain error's ``fields`` object, or DRF's
    ``{field: [messages]}`` beside ``error`` (and ``field`` for a refused JSON value)."""
    if isinstance(data.get("fields"), dict):
        return {str(k): _text(v) for k, v in data["fields"].items()}
    out = {}
    for key, value in data.items():
        if key in ("error", "detail", "status", "retry_after"):
            continue
        if key == "field" and isinstance(value, str):
            out[value] = data.get("detail", "")
        else:
            out[str(key)] = _text(value)
    return out


def _text(value) -> str:
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


class BadRequest(ApiError):
    """400 or 422: the request itself is wrong; ``fields`` says where."""


class Unauthorized(ApiError):
    """401 (or 403 with ``authentication_failed``): no token, or an invalid, expired or revoked
    one."""


class Forbidden(ApiError):
    """403: the role or the token's scope does not allow the call."""


class NotFound(ApiError):
    """404: no such object, or one of another project (the server does not say which)."""


class Conflict(ApiError):
    """409: the object is not in a state for this (a snapshot not ready, a bundle building)."""


class TooLarge(ApiError):
    """413: an upload past the server's limit."""


class RateLimited(ApiError):
    """429: too many requests; ``retry_after`` seconds, when the server says."""

    @property
    def retry_after(self) -> float | None:
        value = self.body.get("retry_after") if isinstance(self.body, dict) else None
        return float(value) if value is not None else None


class ServerError(ApiError):
    """5xx: the server failed; the request may be retried."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: BadRequest,
    429: RateLimited,
}


# The API answers a bad token with 403 (its token scheme sends no WWW-Authenticate challenge);
# the code tells it apart from a refusal of a valid token.
_UNAUTHENTICATED = {"authentication_failed", "not_authenticated"}


def error_for(status: int, method: str, path: str, body) -> ApiError:
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if isinstance(body, dict) and body.get("error") in _UNAUTHENTICATED:
        cls = Unauthorized
    return cls(status, method, path, body)


class ChecksumMismatch(TandemError):
    """A downloaded file's bytes differ from the sha256 the server's manifest names."""

    def __init__(self, path: str, expected: str, actual: str):
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(f"{path}: sha256 {actual} differs from the manifest's {expected}")


class RunFailed(TandemError):
    """``train.follow(..., raise_on_failure=True)``: the run ended other than succeeded."""

    def __init__(self, run: dict):
        self.run = run
        super().__init__(f"run {run.get('id')} ended {run.get('status')}: {run.get('error') or ''}")
