"""Preference-data shapes Tandem reads and writes, as plain functions over dicts.

Conversations are TRL's conversational format: a list of ``{"role", "content"}`` messages.

- HH-RLHF rows: ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}``. Both
  sides share every turn but the last Assistant turn; ``parse_hh_pair`` splits them into the
  shared prompt and the two final answers.
- TRL rows: ``{"prompt", "chosen", "rejected"}`` where each is a string or a message list
  (``prompt`` may be omitted when ``chosen``/``rejected`` are whole conversations).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Message = dict[str, str]
Conversation = list[Message]

ROLES = ("system", "user", "assistant")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


class FormatError(ValueError):
    """A row that does not have the expected shape; the message says what is wrong."""


@dataclass(frozen=True)
class PreferencePair:
    prompt: Conversation  # every turn before the compared answers
    chosen: str
    rejected: str


def parse_hh_dialogue(text: str) -> Conversation:
    """``"\\n\\nHuman: a\\n\\nAssistant: b"`` -> ``[{user: a}, {assistant: b}]``."""
    if not isinstance(text, str):
        raise FormatError("dialogue must be a string")
    parts = _HH_TURN.split(text)
    # parts = [preamble, role, content, role, content, ...]
    if len(parts) < 3 or parts[0].strip():
        raise FormatError("dialogue must start with '\\n\\nHuman: '")
    messages = []
    for i in range(1, len(parts), 2):
        messages.append({"role": _HH_ROLE[parts[i]], "content": parts[i + 1]})
    return messages


def parse_hh_pair(row: dict) -> PreferencePair:
    """Split an HH-RLHF row into the shared prompt and the final chosen/rejected answers."""
    if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row:
        raise FormatError("expected an object with 'chosen' and 'rejected'")
    chosen = parse_hh_dialogue(row["chosen"])
    rejected = parse_hh_dialogue(row["rejected"])
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise FormatError("both dialogues must end with an Assistant turn")
    prompt_c, prompt_r = chosen[:-1], rejected[:-1]
    if prompt_c != prompt_r:
        raise FormatError("'chosen' and 'rejected' must share every turn but the last")
    if not prompt_c:
        raise FormatError("the dialogue has no Human turn before the answer")
    return PreferencePair(
        prompt=prompt_c, chosen=chosen[-1]["content"], rejected=rejected[-1]["content"]
    )


def as_conversation(value, *, default_role: str = "user") -> Conversation:
    """A string becomes one message; a message list is validated and copied."""
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise FormatError("expected a non-empty string or list of messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise FormatError(f"message {i} is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise FormatError(f"message {i} has role {role!r}; expected one of {ROLES}")
        if not isinstance(content, str):
            raise FormatError(f"message {i} has no text 'content'")
        out.append({"role": role, "content": content})
    return out


def _final_answer(value) -> tuple[Conversation, str]:
    """A TRL completion: a string, or messages whose last one is the assistant's answer."""
    if isinstance(value, str):
        return [], value
    conversation = as_conversation(value, default_role="assistant")
    if conversation[-1]["role"] != "assistant":
        raise FormatError("a completion must end with an assistant message")
    return conversation[:-1], conversation[-1]["content"]


def parse_trl_pair(row: dict) -> PreferencePair:
    """Read a TRL preference row (explicit or implicit prompt, strings or message lists)."""
    if not isinstance(row, dict) or "chosen" not in row or "rejected" not in row:
        raise FormatError("expected an object with 'chosen' and 'rejected'")
    prefix_c, chosen = _final_answer(row["chosen"])
    prefix_r, rejected = _final_answer(row["rejected"])
    if "prompt" in row and row["prompt"] is not None:
        prompt = as_conversation(row["prompt"])
        if prefix_c or prefix_r:
            # Explicit prompt plus multi-message completions: the extra turns continue it.
            if prefix_c != prefix_r:
                raise FormatError("'chosen' and 'rejected' continue the prompt differently")
            prompt = prompt + prefix_c
    else:
        if prefix_c != prefix_r:
            raise FormatError("'chosen' and 'rejected' must share every turn but the last")
        prompt = prefix_c
    if not prompt:
        raise FormatError("the row has no prompt")
    return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected)


def parse_preference_row(row: dict) -> PreferencePair:
    """HH-RLHF or TRL shape, told apart by the HH dialogue markers."""
    chosen = row.get("chosen") if isinstance(row, dict) else None
    if "prompt" not in (row or {}) and isinstance(chosen, str) and chosen.startswith("\n\nHuman: "):
        return parse_hh_pair(row)
    return parse_trl_pair(row)
