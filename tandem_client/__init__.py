"""A small Python client for the Tandem API (``tandem_client.Tandem``); see ``client.py``."""

from tandem_client.client import Tandem
from tandem_client.errors import (
    ApiError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RunFailed,
    ServerError,
    TandemError,
    TooLarge,
    Unauthorized,
)

__all__ = [
    "ApiError",
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "RunFailed",
    "ServerError",
    "Tandem",
    "TandemError",
    "TooLarge",
    "Unauthorized",
]
