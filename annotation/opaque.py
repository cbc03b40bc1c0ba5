"""The ids annotators see for tasks and task items: a keyed permutation of the real ids.

Real ids follow creation order, and the queue serves tasks in id order, so an annotator's
sequence of task ids would rise steadily except for gold tasks (served at random, and mostly
older than the queue's front): the ids alone would tell gold apart. Task items have the same
problem (a gold task's items are as old as the task). At the annotator API boundary both are
replaced by refs: a 4-round Feistel permutation of the 52-bit id space keyed by the secret key,
shifted above 2**52 so a ref never equals a real id. Refs carry neither order nor age, stay
below 2**53 (exact as JavaScript numbers), and are stable: a task keeps its ref across reloads.

Routes still accept real ids (engineers' pages and tools use them); ``task_id_from_ref``
turns either form into the real id.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from django.conf import settings

_HALF_BITS = 26
_HALF_MASK = (1 << _HALF_BITS) - 1
_OFFSET = 1 << (2 * _HALF_BITS)  # refs are in [2**52, 2**53)
_ROUNDS = 4


@lru_cache(maxsize=8)
def _round_keys(secret: str, purpose: str) -> tuple[bytes, ...]:
    return tuple(
        hmac.new(secret.encode(), f"tandem-ref:{purpose}:{i}".encode(), hashlib.sha256).digest()
        for i in range(_ROUNDS)
    )


def _f(key: bytes, half: int) -> int:
    digest = hmac.new(key, half.to_bytes(4, "big"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & _HALF_MASK


def _permute(value: int, purpose: str, *, inverse: bool = False) -> int:
    keys = _round_keys(settings.SECRET_KEY, purpose)
    left, right = value >> _HALF_BITS, value & _HALF_MASK
    if not inverse:
        for key in keys:
            left, right = right, left ^ _f(key, right)
    else:
        for key in reversed(keys):
            left, right = right ^ _f(key, left), left
    return (left << _HALF_BITS) | right


def _ref(real_id: int, purpose: str) -> int:
    if not 0 <= real_id < _OFFSET:
        raise ValueError(f"id {real_id} is outside the space refs cover")
    return _OFFSET + _permute(real_id, purpose)


def _real(value: int, purpose: str) -> int:
    value = int(value)
    if _OFFSET <= value < 2 * _OFFSET:
        return _permute(value - _OFFSET, purpose, inverse=True)
    return value


def task_ref(task_id: int) -> int:
    """The id an annotator sees for a task."""
    return _ref(task_id, "task")


def task_id_from_ref(value) -> int:
    """A task's real id from its ref or from the real id itself."""
    return _real(value, "task")


def item_ref(item_id: int) -> int:
    """The id an annotator sees for a task item (and so for the response it shows)."""
    return _ref(item_id, "item")
