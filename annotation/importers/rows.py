"""Validating one record of an import file into a row to write (or a reason to refuse it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotation.models import IMPORTABLE_TASK_KINDS, TaskKind
from formats.peers import READERS
from formats.preference import FormatError, as_conversation, parse_preference_row

MAX_TEXT_CHARS = 200_000
MAX_MESSAGES = 200
# Exports of peer tools, read by ``formats.peers``; each judgement becomes a label by an
# external annotator named after the tool and the person's id there.
PEER_KINDS = ("label_studio", "argilla")
MAX_PEER_JUDGEMENTS = 50


@dataclass
class _Row:
    line: int
    messages: list[dict]
    responses: list[dict] = field(default_factory=list)  # {"text", "model_name"}
    kinds: list[str] = field(default_factory=list)
    chosen_index: int | None = None  # preferences: which response was chosen
    # peer exports: (the person's id in the tool, tiers of response indices, best first)
    judgements: list[tuple[str, list[list[int]]]] = field(default_factory=list)
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
        if not isinstance(value, list) or any(k not in IMPORTABLE_TASK_KINDS for k in value):
            raise _RowError(f"kinds must be drawn from {list(IMPORTABLE_TASK_KINDS)}")
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


def _row_from_peer(kind: str, record, line: int, enabled: list[str]) -> _Row:
    """A Label Studio task or an Argilla record: its prompt, responses and judgements."""
    try:
        peer = READERS[kind](record)
    except FormatError as exc:
        raise _RowError(str(exc)) from None
    if len(peer.prompt) > MAX_MESSAGES:
        raise _RowError(f"more than {MAX_MESSAGES} messages")
    for i, m in enumerate(peer.prompt):
        _check_text(m["content"], f"message {i}")
    if not 2 <= len(peer.responses) <= 20:
        raise _RowError("a comparison needs 2 to 20 responses")
    for i, text in enumerate(peer.responses):
        _check_text(text, f"response {i + 1}", allow_empty=True)
    if len(set(peer.responses)) != len(peer.responses):
        raise _RowError("the same response appears twice")
    if len(peer.judgements) > MAX_PEER_JUDGEMENTS:
        raise _RowError(f"more than {MAX_PEER_JUDGEMENTS} judgements on one record")
    task_kind = TaskKind.PAIRWISE if len(peer.responses) == 2 else TaskKind.RANKING
    if task_kind not in enabled:
        raise _RowError(f"task kind {task_kind.value!r} is not enabled in this project")
    metadata = {kind: {"id": peer.external_id[:200], "skipped": peer.skipped}}
    if peer.suggestions:
        metadata[kind]["suggestions"] = peer.suggestions[:MAX_PEER_JUDGEMENTS]
    return _Row(
        line,
        peer.prompt,
        [{"text": text, "model_name": ""} for text in peer.responses],
        [task_kind],
        source=kind,
        metadata=metadata,
        judgements=[(j.annotator[:80], j.tiers) for j in peer.judgements],
    )
