"""Resumable downloads: one ``Range: bytes=...`` request served as 200, 206 or 416 (RFC 9110 §14).

``ranged_response`` streams a body of a known size from any ``read_range(start, end)`` iterator
(end inclusive), so a file, a tar assembled on the fly or anything else addressable by offset is
served the same way. One range per request: a multi-range or malformed header is ignored and the
whole body is sent (200), as the RFC allows. ``If-Range`` with another validator than the
body's ``ETag`` also sends the whole body, so a client never splices two different bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from django.http import HttpResponse, StreamingHttpResponse

_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    """The range starts past the end of the body (answered with 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a satisfiable single range; None to send everything."""
    if not header:
        return None
    match = _SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # unknown unit, several ranges or garbage: ignore the header
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(header)
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid per the RFC: ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(end, size - 1)


def ranged_response(
    request,
    *,
    size: int,
    read_range: Callable[[int, int], Iterator[bytes]],
    content_type: str,
    filename: str,
    etag: str,
) -> HttpResponse:
    """200 with the whole body, 206 with the requested range, or 416 for one past the end.

    ``etag`` is a strong validator of the body (a content hash), quoted here."""
    quoted = f'"{etag}"'
    header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != quoted:
        header = None
    try:
        wanted = parse_range(header, size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    start, end = wanted if wanted is not None else (0, size - 1)
    body = read_range(start, end) if size else iter(())
    response = StreamingHttpResponse(body, content_type=content_type, status=206 if wanted else 200)
    response["Content-Length"] = str(end - start + 1 if size else 0)
    if wanted is not None:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = quoted
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
