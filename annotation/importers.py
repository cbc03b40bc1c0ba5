"""Importing prompts, responses and already-labelled preference pairs from JSONL or CSV.

A file is read and validated whole before anything is written: a bad row refuses the whole
file with its line number and the reason, and nothing is half-imported. Writing happens in
one transaction with content hashes, so importing the same file again creates nothing new.

Kinds of file:
- ``prompts``: JSONL rows ``{"prompt": "text"}`` or ``{"messages": [{role, content}, ...]}``
  (optional ``source``, ``metadata``); CSV with a ``prompt`` column (optional ``system``).
- ``responses``: JSONL ``{"prompt"|"messages", "responses": ["text" | {"text", "model"}],
  "kinds": [...]}``; CSV with ``prompt`` and ``response_1``, ``response_2``... columns.
  Two responses make a pairwise task, three or more a ranking, one a correction task,
  unless ``kinds`` (per row or for the file) says otherwise.
- ``preferences``: labelled pairs in the HH-RLHF shape (``chosen``/``rejected`` dialogues) or
  the TRL shape (``prompt``/``chosen``/``rejected``); each becomes a pairwise task with a
  label by a named external annotator, so it feeds training like any other label.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import (
    ImportBatch,
    Label,
    LabelSource,
    Project,
    Prompt,
    Response,
    ResponseOrigin,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.services import (
    external_annotator,
    prompt_messages_hash,
    task_content_hash,
    text_hash,
)
from config.errors import PayloadTooLarge, ValidationFailed
from config.safepaths import bounded_gunzip, display_filename
from config.untrusted import json_value_problem
from rlhf.training.formats import FormatError, as_conversation, parse_preference_row

IMPORT_KINDS = ("prompts", "responses", "preferences")
MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 200
MAX_ERRORS_REPORTED = 20
_CHUNK = 2000


@dataclass
class _Row:
    line: int
    messages: list[dict]
    responses: list[dict] = field(default_factory=list)  # {"text", "model_name"}
    kinds: list[str] = field(default_factory=list)
    chosen_index: int | None = None  # preferences: which response was chosen
    source: str = ""
    metadata: dict = field(default_factory=dict)


class _RowError(Exception):
    pass


def _check_text(value, what: str, *, allow_empty: bool = False) -> str:
    """Prompts must say something; a response may be empty (models and people do answer
    with silence, and HH-RLHF has such chosen answers)."""
    if not isinstance(value, str):
        raise _RowError(f"{what} must be text")
    if not allow_empty and not value.strip():
        raise _RowError(f"{what} is empty")
    if len(value) > MAX_TEXT_CHARS:
        raise _RowError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    if "\x00" in value:
        raise _RowError(f"{what} contains a NUL character")
    return value


def _messages_from(record: dict) -> list[dict]:
    value = record.get("messages", record.get("prompt"))
    if value is None:
        raise _RowError("needs 'prompt' (text or messages) or 'messages'")
    try:
        messages = as_conversation(value)
    except FormatError as exc:
        raise _RowError(str(exc)) from None
    if len(messages) > MAX_MESSAGES:
        raise _RowError(f"more than {MAX_MESSAGES} messages")
    for i, m in enumerate(messages):
        _check_text(m["content"], f"message {i}")
    return messages


def _kinds_from(value, n_responses: int, enabled: list[str]) -> list[str]:
    if value:
        if not isinstance(value, list) or any(k not in TaskKind.values for k in value):
            raise _RowError(f"kinds must be drawn from {TaskKind.values}")
        kinds = list(dict.fromkeys(value))
    elif n_responses == 2:
        kinds = [TaskKind.PAIRWISE]
    elif n_responses >= 3:
        kinds = [TaskKind.RANKING]
    else:
        kinds = [TaskKind.CORRECTION]
    for kind in kinds:
        if kind not in enabled:
            raise _RowError(f"task kind {kind!r} is not enabled in this project")
        if kind == TaskKind.PAIRWISE and n_responses != 2:
            raise _RowError("a pairwise task needs exactly 2 responses")
        if kind == TaskKind.RANKING and not 3 <= n_responses <= 20:
            raise _RowError("a ranking task needs 3 to 20 responses")
    return kinds


def _row_from_record(kind: str, record, line: int, enabled: list[str], file_kinds) -> _Row:
    if not isinstance(record, dict):
        raise _RowError("each row must be a JSON object")
    source = record.get("source") or ""
    metadata = record.get("metadata") or {}
    if not isinstance(source, str) or len(source) > 200:
        raise _RowError("source must be text under 200 characters")
    if not isinstance(metadata, dict):
        raise _RowError("metadata must be an object")
    if kind == "prompts":
        return _Row(line, _messages_from(record), source=source, metadata=metadata)
    if kind == "responses":
        messages = _messages_from(record)
        raw = record.get("responses")
        if not isinstance(raw, list) or not raw or len(raw) > 20:
            raise _RowError("'responses' must be a list of 1 to 20 responses")
        responses = []
        for i, r in enumerate(raw):
            text, model = (
                (r, "")
                if isinstance(r, str)
                else ((r.get("text"), r.get("model") or "") if isinstance(r, dict) else (None, ""))
            )
            _check_text(text, f"response {i + 1}", allow_empty=True)
            if not isinstance(model, str) or len(model) > 200:
                raise _RowError(f"response {i + 1}: model must be text under 200 characters")
            responses.append({"text": text, "model_name": model})
        if len({r["text"] for r in responses}) != len(responses):
            raise _RowError("the same response appears twice")
        kinds = _kinds_from(record.get("kinds") or file_kinds, len(responses), enabled)
        return _Row(line, messages, responses, kinds, source=source, metadata=metadata)
    # preferences
    try:
        pair = parse_preference_row(record)
    except FormatError as exc:
        raise _RowError(str(exc)) from None
    for i, m in enumerate(pair.prompt):
        _check_text(m["content"], f"message {i}")
    _check_text(pair.chosen, "chosen", allow_empty=True)
    _check_text(pair.rejected, "rejected", allow_empty=True)
    if pair.chosen == pair.rejected:
        raise _RowError("chosen and rejected are the same text")
    if TaskKind.PAIRWISE not in enabled:
        raise _RowError("pairwise tasks are not enabled in this project")
    responses = [{"text": pair.chosen, "model_name": ""}, {"text": pair.rejected, "model_name": ""}]
    return _Row(line, pair.prompt, responses, [TaskKind.PAIRWISE], chosen_index=0,
                source=source, metadata=metadata)  # fmt: skip


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


def _holds_nul(value) -> bool:
    stack = [value]  # iterative, so no nesting the decoder accepted can exhaust the stack
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
                problem = json_value_problem(record)
                if _holds_nul(record):
                    yield number, _RowError("contains a NUL character (\\u0000)")
                elif problem:  # a lone surrogate, an integer past 64 bits, deep nesting
                    yield number, _RowError(f"{problem[0] or 'the row'} {problem[1]}")
                else:
                    yield number, record
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
        raise PayloadTooLarge(f"the file is larger than {settings.TANDEM_MAX_IMPORT_BYTES} bytes")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ValidationFailed(f"line {line}: the file contains a NUL byte", line=line)
    fmt = detect_format(filename, data[:64])
    text = _decode(data)
    rows, errors = [], []
    for line, record in _records(text, fmt):
        if isinstance(record, _RowError):
            errors.append({"line": line, "reason": str(record)})
        else:
            try:
                rows.append(
                    _row_from_record(kind, record, line, list(project.task_kinds), task_kinds)
                )
            except _RowError as exc:
                errors.append({"line": line, "reason": str(exc)})
        if len(errors) >= MAX_ERRORS_REPORTED:
            break
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"line {first['line']}: {first['reason']} (nothing was imported)",
            code="bad_file",
            errors=errors,
        )
    if not rows:
        raise ValidationFailed("the file holds no rows", code="empty_file")
    return rows


def _chunks(items: list, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pairwise_order(prompt_hash: str, hashes: list[str]) -> list[int]:
    """Canonical A/B order for an imported pair, balanced by hash (chosen is not always A)."""
    flip = hashlib.sha256((prompt_hash + "".join(hashes)).encode()).digest()[0] & 1
    return [1, 0] if flip else [0, 1]


@transaction.atomic
def import_rows(
    *,
    project: Project,
    rows: list[_Row],
    kind: str,
    created_by,
    filename: str,
    sha256: str,
    fmt: str,
    annotator_name: str | None = None,
) -> ImportBatch:
    counts = {
        "rows": len(rows),
        "prompts_created": 0,
        "responses_created": 0,
        "tasks_created": 0,
        "labels_created": 0,
        "labels_existing": 0,
        "labels_skipped_task_full": 0,
    }
    # 1. Prompts, deduplicated by content hash within the file and against the project.
    prompt_hashes = {}
    for row in rows:
        prompt_hashes.setdefault(prompt_messages_hash(row.messages), row)
    prompt_ids: dict[str, int] = {}
    for chunk in _chunks(list(prompt_hashes)):
        prompt_ids.update(
            Prompt.objects.filter(project=project, content_hash__in=chunk).values_list(
                "content_hash", "id"
            )
        )
    new_prompts = [
        Prompt(project=project, messages=row.messages, content_hash=h, source=row.source,
               metadata=row.metadata)
        for h, row in prompt_hashes.items() if h not in prompt_ids
    ]  # fmt: skip
    Prompt.objects.bulk_create(new_prompts, batch_size=_CHUNK)
    counts["prompts_created"] = len(new_prompts)
    for chunk in _chunks([p.content_hash for p in new_prompts]):
        prompt_ids.update(
            Prompt.objects.filter(project=project, content_hash__in=chunk).values_list(
                "content_hash", "id"
            )
        )
    if kind == "prompts":
        return ImportBatch.objects.create(
            project=project, created_by=created_by, filename=filename[:255], format=fmt,
            sha256=sha256, rows=len(rows), counts=counts,
        )  # fmt: skip

    # 2. Responses (origin import or model, by whether a model name was given).
    def origin_of(r):
        return ResponseOrigin.MODEL if r["model_name"] else ResponseOrigin.IMPORT

    response_keys = {}
    for row in rows:
        pid = prompt_ids[prompt_messages_hash(row.messages)]
        for r in row.responses:
            key = (pid, origin_of(r), r["model_name"], text_hash(r["text"]))
            response_keys.setdefault(key, r["text"])
    response_ids: dict[tuple, int] = {}
    by_prompt: dict[int, list] = {}
    for key in response_keys:
        by_prompt.setdefault(key[0], []).append(key)
    prompt_list = list(by_prompt)
    for chunk in _chunks(prompt_list):
        for rid, pid, origin, model, h in Response.objects.filter(prompt_id__in=chunk).values_list(
            "id", "prompt_id", "origin", "model_name", "content_hash"
        ):
            response_ids[(pid, origin, model, h)] = rid
    new_responses = [
        Response(prompt_id=k[0], origin=k[1], model_name=k[2], content_hash=k[3], text=text)
        for k, text in response_keys.items()
        if k not in response_ids
    ]
    Response.objects.bulk_create(new_responses, batch_size=_CHUNK)
    counts["responses_created"] = len(new_responses)
    for chunk in _chunks(prompt_list):
        for rid, pid, origin, model, h in Response.objects.filter(prompt_id__in=chunk).values_list(
            "id", "prompt_id", "origin", "model_name", "content_hash"
        ):
            response_ids[(pid, origin, model, h)] = rid

    # 3. Tasks and their items.
    planned = {}  # task hash -> (row, kind, [response ids in canonical order], winner)
    for row in rows:
        ph = prompt_messages_hash(row.messages)
        pid = prompt_ids[ph]
        keys = [(pid, origin_of(r), r["model_name"], text_hash(r["text"])) for r in row.responses]
        for task_kind in row.kinds:
            groups = [keys] if task_kind != TaskKind.CORRECTION else [[k] for k in keys]
            for group in groups:
                order = list(range(len(group)))
                if row.chosen_index is not None:
                    order = _pairwise_order(ph, [k[3] for k in group])
                ordered = [group[i] for i in order]
                th = task_content_hash(task_kind, ph, [k[3] for k in ordered])
                winner = response_ids[group[row.chosen_index]] if row.chosen_index is not None \
                    else None  # fmt: skip
                planned.setdefault(th, (row, task_kind, [response_ids[k] for k in ordered],
                                        winner, pid))  # fmt: skip
    task_ids: dict[str, int] = {}
    for chunk in _chunks(list(planned)):
        task_ids.update(
            Task.objects.filter(project=project, content_hash__in=chunk).values_list(
                "content_hash", "id"
            )
        )
    new_tasks = [
        Task(project=project, prompt_id=pid, kind=task_kind, required_labels=project.overlap,
             content_hash=th, source=row.source or f"import:{filename[:150]}",
             metadata=row.metadata)
        for th, (row, task_kind, _ids, _winner, pid) in planned.items() if th not in task_ids
    ]  # fmt: skip
    Task.objects.bulk_create(new_tasks, batch_size=_CHUNK)
    counts["tasks_created"] = len(new_tasks)
    new_hashes = {t.content_hash for t in new_tasks}
    for chunk in _chunks(list(new_hashes)):
        task_ids.update(
            Task.objects.filter(project=project, content_hash__in=chunk).values_list(
                "content_hash", "id"
            )
        )
    TaskItem.objects.bulk_create(
        [
            TaskItem(task_id=task_ids[th], response_id=rid, position=i)
            for th in new_hashes
            for i, rid in enumerate(planned[th][2])
        ],
        batch_size=_CHUNK,
    )

    # 4. Labels by the external annotator (preference files).
    if kind == "preferences":
        annotator = external_annotator(annotator_name or filename)
        wanted = {task_ids[th]: planned[th] for th in planned}
        tasks = {
            t.pk: t
            for chunk in _chunks(list(wanted))
            for t in Task.objects.select_for_update().filter(pk__in=chunk)
        }
        labelled = {
            tid
            for chunk in _chunks(list(wanted))
            for tid in Label.objects.filter(task_id__in=chunk, annotator=annotator).values_list(
                "task_id", flat=True
            )
        }
        new_labels, filled = [], []
        for tid, (_row, _kind, ids, winner, _pid) in wanted.items():
            task = tasks[tid]
            if tid in labelled:
                counts["labels_existing"] += 1
                continue
            if task.label_count >= task.required_labels:
                counts["labels_skipped_task_full"] += 1
                continue
            outcome = "A" if ids[0] == winner else "B"
            new_labels.append(
                Label(
                    task_id=tid, annotator=annotator, kind=TaskKind.PAIRWISE,
                    payload={"outcome": outcome, "strength": None, "winner": winner,
                             "chosen_side": None, "rationale": ""},
                    source=LabelSource.IMPORT,
                )
            )  # fmt: skip
            filled.append(tid)
        Label.objects.bulk_create(new_labels, batch_size=_CHUNK)
        counts["labels_created"] = len(new_labels)
        for chunk in _chunks(filled):
            Task.objects.filter(pk__in=chunk).update(label_count=F("label_count") + 1)
            Task.objects.filter(pk__in=chunk, label_count__gte=F("required_labels")).update(
                status=TaskStatus.DONE, completed_at=timezone.now()
            )
    return ImportBatch.objects.create(
        project=project, created_by=created_by, filename=filename[:255], format=fmt,
        sha256=sha256, rows=len(rows), counts=counts,
    )  # fmt: skip


# Leading bytes of files that are refused outright, with the reason a person can act on.
_REFUSED_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)
GZIP_MAX_RATIO = 200


def unpack_upload(data: bytes, filename: str) -> tuple[bytes, str]:
    """The file as text rows: gzip is expanded (bounded, so a bomb is refused); archives and
    pickles are refused with a clear reason (nothing in an upload is ever unpickled)."""
    filename = display_filename(filename)
    if data[:2] == b"\x1f\x8b":
        data = bounded_gunzip(
            data, max_bytes=settings.TANDEM_MAX_IMPORT_BYTES, max_ratio=GZIP_MAX_RATIO
        )
        filename = filename[:-3] if filename.lower().endswith(".gz") else filename
    for magic, what in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise ValidationFailed(
                f"{filename} is {what}; upload JSONL or CSV (optionally gzip-compressed)",
                code="unsupported_file",
            )
    if len(data) > 262 and data[257:262] == b"ustar":
        raise ValidationFailed(
            f"{filename} is a tar archive; upload JSONL or CSV (optionally gzip-compressed)",
            code="unsupported_file",
        )
    return data, filename


def import_file(
    *,
    project: Project,
    data: bytes,
    filename: str,
    kind: str,
    created_by,
    annotator_name: str | None = None,
    task_kinds: list[str] | None = None,
) -> ImportBatch:
    """Validate then import a whole file (the service behind the API, page and CLI)."""
    data, filename = unpack_upload(data, filename)
    rows = parse_import(
        project=project, data=data, filename=filename, kind=kind, task_kinds=task_kinds
    )
    return import_rows(
        project=project,
        rows=rows,
        kind=kind,
        created_by=created_by,
        filename=filename,
        sha256=hashlib.sha256(data).hexdigest(),
        fmt=detect_format(filename, data[:64]),
        annotator_name=annotator_name,
    )
