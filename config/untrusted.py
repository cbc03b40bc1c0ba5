"""Input the databases cannot store, refused at the boundary with the field named.

Python accepts values that PostgreSQL and SQLite refuse, and each one used to surface as a
500 deep inside a service: a lone UTF-16 surrogate (``"\\ud83d"`` decodes to a ``str`` that
cannot be encoded as UTF-8), JSON nested so deep that the decoder recurses out of stack, and
integers past 64 bits (SQLite raises OverflowError binding them; a path id can never name a
row), and a NUL character (PostgreSQL's text and jsonb refuse ``\\u0000``). One walk checks a
decoded JSON value for all of them (the API's JSON parser, JSON form fields and the JSONL
importer call it), and one middleware bounds every integer id in a URL path.
"""

from __future__ import annotations

from django.http import HttpResponseBadRequest, JsonResponse

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Deeper than any payload, metric or import row the platform defines; far below the
# decoder's recursion limit and PostgreSQL's jsonb nesting limit.
MAX_JSON_DEPTH = 64


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def json_value_problem(value, *, max_depth: int = MAX_JSON_DEPTH) -> tuple[str, str] | None:
    """``(field, reason)`` for the first part of a decoded JSON value no database stores
    (a lone surrogate in a key or a string, an integer past 64 bits, nesting deeper than
    ``max_depth``), or None. ``field`` is a path such as ``payload.scores[0]``; a bad key is
    reported on the object that holds it. Iterative, so no nesting can exhaust the stack."""
    stack = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _has_lone_surrogate(item):
                return path, "contains a lone surrogate (an unpaired \\ud800-\\udfff escape)"
            if "\x00" in item:
                return path, "contains a NUL character (\\u0000)"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return path, "is an integer outside the 64-bit range"
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return path, f"is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _has_lone_surrogate(key):
                        return path, "has a key with a lone surrogate"
                    if isinstance(key, str) and "\x00" in key:
                        return path, "has a key with a NUL character (\\u0000)"
                    stack.append((child, _path(path, key), depth + 1))
            else:
                stack.extend((child, _path(path, i), depth + 1) for i, child in enumerate(item))
    return None


def int64_problem(raw) -> str | None:
    """Why a whole number from a URL or a form cannot name a row, or None. Only ASCII digits
    count: ``int()`` also reads other scripts' digits ("١٢" is 12), which no id is written in."""
    if isinstance(raw, str) and not raw.isascii():
        return "must be a whole number"
    try:
        number = int(raw)
    except (TypeError, ValueError):
        return "must be a whole number"
    if not INT64_MIN <= number <= INT64_MAX:
        return "is outside the 64-bit range"
    return None


class BoundedPathIdsMiddleware:
    """Every ``<int:...>`` in a URL path within the 64-bit range, else a 400 naming it.

    Django's ``int`` converter accepts any run of digits, and SQLite cannot bind a number
    past 64 bits (OverflowError, a 500); no row has such an id on any database."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        for name, value in view_kwargs.items():
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                detail = f"{name} is outside the 64-bit range"
                if request.path.startswith("/api/"):
                    body = {"error": "invalid", "detail": detail, "field": name}
                    return JsonResponse(body, status=400)
                return HttpResponseBadRequest(detail, content_type="text/plain")
        return None
