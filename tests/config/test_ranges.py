"""``config.ranges``: one byte range per request, as RFC 9110 reads it."""

import pytest
from django.test import RequestFactory

from config.ranges import RangeNotSatisfiable, parse_range, ranged_response

BODY = bytes(range(256)) * 4  # 1024 bytes


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=1000-", (1000, 1023)),
        ("bytes=1000-5000", (1000, 1023)),  # an end past the body is clamped
        ("bytes=-24", (1000, 1023)),  # the last 24 bytes
        ("bytes=-5000", (0, 1023)),
        ("bytes=5-4", None),  # end before start: ignored, the whole body
        ("bytes=0-1,5-9", None),  # several ranges: ignored
        ("items=0-9", None),
        ("bytes=-", None),
        ("bytes=x-9", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, len(BODY)) == expected


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=2000-3000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, len(BODY))


def respond(**headers):
    request = RequestFactory().get("/x", headers=headers)
    return ranged_response(
        request,
        size=len(BODY),
        read_range=lambda start, end: iter([BODY[start : end + 1]]),
        content_type="application/octet-stream",
        filename="x.bin",
        etag="abc",
    )


def test_responses_carry_the_right_status_length_and_bytes():
    whole = respond()
    assert (whole.status_code, whole["Content-Length"]) == (200, "1024")
    assert b"".join(whole.streaming_content) == BODY
    part = respond(Range="bytes=10-19", If_Range='"abc"')
    assert (part.status_code, part["Content-Range"]) == (206, "bytes 10-19/1024")
    assert b"".join(part.streaming_content) == BODY[10:20]
    assert respond(Range="bytes=10-19", If_Range='"other"').status_code == 200
    past = respond(Range="bytes=1024-")
    assert (past.status_code, past["Content-Range"]) == (416, "bytes */1024")
