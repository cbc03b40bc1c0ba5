"""Left-truncation of long prompts at export, so trainers never drop rows silently.

TRL's trainers filter or cut rows longer than ``max_length``; a long multi-turn prompt would
lose its final turns (the ones the answer responds to) or the whole row. Here the oldest turns
go first, a leading system message is kept when it fits, the last message is always kept
(cut from its start if it alone is over budget), and every truncated row is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rlhf.data.records import Message


@dataclass(frozen=True)
class TruncationConfig:
    """max_prompt_chars: budget in characters of all prompt turns' content, or None.
    max_prompt_tokens: budget in tokens, measured by ``count_tokens`` (e.g. a tokenizer's
        ``len(tok(text).input_ids)``), or None. Template tokens (role markers) are not
        counted: leave headroom for them.
    """

    max_prompt_chars: int | None = None
    max_prompt_tokens: int | None = None
    count_tokens: Callable[[str], int] | None = None

    def __post_init__(self):
        if self.max_prompt_tokens is not None and self.count_tokens is None:
            raise ValueError("max_prompt_tokens needs a count_tokens function")

    @property
    def active(self) -> bool:
        return self.max_prompt_chars is not None or self.max_prompt_tokens is not None

    def describe(self) -> dict:
        return {
            "max_prompt_chars": self.max_prompt_chars,
            "max_prompt_tokens": self.max_prompt_tokens,
        }


def truncate_prompt_left(
    messages: list[Message], *, budget: int, measure: Callable[[str], int] = len
) -> tuple[list[Message], bool]:
    """The newest turns of ``messages`` that fit ``budget``, and whether anything was cut."""
    sizes = [measure(m["content"]) for m in messages]
    if sum(sizes) <= budget:
        return messages, False
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    body = messages[len(system) :]
    body_sizes = sizes[len(system) :]
    if system and sizes[0] + body_sizes[-1] > budget:
        system = []  # the final turn matters more than the system message
    room = budget - (sizes[0] if system else 0)
    kept, used = [], 0
    for message, size in zip(reversed(body), reversed(body_sizes), strict=True):
        if used + size > room:
            break
        kept.append(message)
        used += size
    kept.reverse()
    if not kept:
        last = body[-1]
        kept = [{"role": last["role"], "content": _tail(last["content"], room, measure)}]
    # Start the kept turns on a user turn where possible: chat templates expect user first.
    while len(kept) > 1 and kept[0]["role"] == "assistant":
        kept = kept[1:]
    return system + kept, True


def _tail(text: str, budget: int, measure: Callable[[str], int]) -> str:
    """The longest suffix of ``text`` whose measure fits ``budget`` (binary search)."""
    if budget <= 0:
        return ""
    low, high = 0, len(text)  # search the start index
    while low < high:
        mid = (low + high) // 2
        if measure(text[mid:]) <= budget:
            high = mid
        else:
            low = mid + 1
    return text[low:].lstrip()


def truncate_row(row: dict, shape: str, config: TruncationConfig) -> bool:
    """Truncate a row's prompt in place by ``config``; True if it was cut."""
    key = "messages" if shape == "sft" else "prompt"
    messages = row[key]
    if shape == "sft":
        # The final assistant answer is the target: truncate only what precedes it.
        head, tail = messages[:-1], messages[-1:]
    else:
        head, tail = messages, []
    cut = False
    if config.max_prompt_chars is not None:
        head, did = truncate_prompt_left(head, budget=config.max_prompt_chars)
        cut |= did
    if config.max_prompt_tokens is not None:
        head, did = truncate_prompt_left(
            head, budget=config.max_prompt_tokens, measure=config.count_tokens
        )
        cut |= did
    if cut:
        row[key] = head + tail
    return cut
