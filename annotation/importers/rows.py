"""Validating one record of an import file into a row to write (or a reason to refuse it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.models import TaskKind
from formats.preference import FormatError, as_conversation, parse_preference_row

MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 200


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
