"""Reading a whole import file: bytes to records to validated rows, or every bad line."""

from __future__ import annotations

import csv
import io
import json
import math

from django.conf import settings

from annotation.importers.rows import (
    MAX_TEXT_CHARS,
    PEER_KINDS,
    _Row,
    _row_from_peer,
    _row_from_record,
    _RowError,
)
from annotation.models import Project
from config.errors import PayloadTooLarge, ValidationFailed
from config.untrusted import json_value_problem

IMPORT_KINDS = ("prompts", "responses", "preferences", *PEER_KINDS)
# One line of each kind of file, shown with every refusal so the fix is obvious (the manage
# page shows the same examples beside its import form).
ROW_EXAMPLES = {
    "prompts": '{"prompt": "How do I boil an egg?"}',
    "responses": (
        '{"prompt": "Name a prime number.", "responses": ["2", "9", "15"], "kinds": ["ranking"]}'
        "  (2 responses make a pairwise task, 3 to 20 a ranking task)"
    ),
    "preferences": (
        '{"prompt": "Say hi.", "chosen": "Hello!", "rejected": "Go away."}'
        "  (or HH-RLHF's chosen/rejected transcripts)"
    ),
    "label_studio": (
        '[{"data": {"prompt": "Say hi.", "answer1": "Hello!", "answer2": "Go away."}, '
        '"annotations": [{"completed_by": 7, "result": [{"type": "pairwise", '
        '"to_name": "answer1,answer2", "value": {"selected": "left"}}]}]}]'
        "  (Label Studio's JSON export of a Pairwise or List + Ranker project)"
    ),
    "argilla": (
        '[{"fields": {"prompt": "Say hi.", "response1": "Hello!", "response2": "Go away."}, '
        '"responses": {"preference": [{"value": ["response1", "response2"], "user_id": "u1", '
        '"status": "submitted"}]}}]  (Argilla records with a ranking question)'
    ),
}
MAX_ERRORS_REPORTED = 20


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValidationFailed(
            f"line {line}: the file is not valid UTF-8", code="bad_encoding", line=line
        ) from None


# Python's json accepts what PostgreSQL's jsonb and text columns refuse (NaN, Infinity, a
# \u0000 escape): a row holding one must be refused with its line, not fail the INSERT.
def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _checked(record):
    problem = json_value_problem(record)
    if problem:  # a lone surrogate or NUL, an integer past 64 bits, deep nesting
        return _RowError(f"{problem[0] or 'the row'} {problem[1]}")
    return record


def _peer_records(text: str):
    """A peer's export: one JSON array (Label Studio's and Argilla's JSON export) or JSONL.
    Yields (record number, record); the number counts records from 1."""
    if text.lstrip()[:1] != "[":
        yield from _records(text, "jsonl")
        return
    try:
        records = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except json.JSONDecodeError as exc:
        yield exc.lineno, _RowError(f"not valid JSON ({exc.msg})")
        return
    except ValueError as exc:
        yield 1, _RowError(f"not valid JSON ({exc})")
        return
    except RecursionError:
        yield 1, _RowError("not valid JSON (nested too deeply)")
        return
    for number, record in enumerate(records, start=1):
        yield number, _checked(record)


def _records(text: str, fmt: str):
    """Yield (line number, record) pairs; a parse error yields (line, _RowError)."""
    if fmt == "jsonl":
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
            except json.JSONDecodeError as exc:
                yield number, _RowError(f"not valid JSON ({exc.msg})")
            except ValueError as exc:  # NaN, Infinity, 1e999, an integer of 4,300+ digits
                yield number, _RowError(f"not valid JSON ({exc})")
            except RecursionError:
                yield number, _RowError("not valid JSON (nested too deeply)")
            else:
                yield number, _checked(record)
        return
    csv.field_size_limit(MAX_TEXT_CHARS * 4)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        yield 1, _RowError("the CSV file has no header row")
        return
    try:
        for record in reader:
            yield reader.line_num, _csv_record(record)
    except csv.Error as exc:
        yield reader.line_num, _RowError(f"not valid CSV ({exc})")


def _csv_record(record: dict) -> dict:
    out: dict = {}
    prompt = record.get("prompt")
    if record.get("system"):
        out["messages"] = [
            {"role": "system", "content": record["system"]},
            {"role": "user", "content": prompt or ""},
        ]
    else:
        out["prompt"] = prompt
    responses = [
        record[k]
        for k in sorted(
            (k for k in record if k and k.startswith("response_")),
            key=lambda k: (len(k), k),
        )
        if record[k]
    ]
    if responses:
        out["responses"] = responses
    for key in ("chosen", "rejected", "source"):
        if record.get(key):
            out[key] = record[key]
    if "chosen" in out:
        out["prompt"] = prompt
    return out


def megabytes(size: int) -> str:
    value = size / (1024 * 1024)  # the binary megabyte the limit is set in
    return f"{value:.0f} MB" if value >= 10 else f"{value:.1f} MB"


def size_refusal(size: int) -> str:
    """The words for a file over the limit (the page's script says the same before sending)."""
    return (
        f"this file is {megabytes(size)}; the limit is "
        f"{megabytes(settings.TANDEM_MAX_IMPORT_BYTES)}"
    )


def detect_format(filename: str, head: bytes) -> str:
    name = filename.lower()
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return "jsonl" if head.lstrip()[:1] in (b"{", b"[") else "csv"


def parse_import(
    *, project: Project, data: bytes, filename: str, kind: str, task_kinds=None
) -> list[_Row]:
    """Validate a whole file; raise ValidationFailed listing the first bad lines."""
    if kind not in IMPORT_KINDS:
        raise ValidationFailed(f"kind must be one of {list(IMPORT_KINDS)}", field="kind")
    if len(data) > settings.TANDEM_MAX_IMPORT_BYTES:
        raise PayloadTooLarge(size_refusal(len(data)))
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ValidationFailed(f"line {line}: the file contains a NUL byte", line=line)
    fmt = detect_format(filename, data[:64])
    text = _decode(data)
    rows, errors = [], []
    records = _peer_records(text) if kind in PEER_KINDS else _records(text, fmt)
    where = "record" if kind in PEER_KINDS and text.lstrip()[:1] == "[" else "line"
    for line, record in records:
        if isinstance(record, _RowError):
            errors.append({"line": line, "reason": str(record)})
        else:
            enabled = list(project.task_kinds)
            try:
                rows.append(
                    _row_from_peer(kind, record, line, enabled)
                    if kind in PEER_KINDS
                    else _row_from_record(kind, record, line, enabled, task_kinds)
                )
            except _RowError as exc:
                errors.append({"line": line, "reason": str(exc)})
        if len(errors) >= MAX_ERRORS_REPORTED:
            break
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"{where} {first['line']}: {first['reason']} (nothing was imported). "
            f"A {kind} row looks like: {ROW_EXAMPLES[kind]}",
            code="bad_file",
            errors=errors,
            example=ROW_EXAMPLES[kind],
        )
    if not rows:
        raise ValidationFailed("the file holds no rows", code="empty_file")
    return rows
