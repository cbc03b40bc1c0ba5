"""Content hashes: the same prompt, response or task always hashes the same, so imports and
generated answers deduplicate against what a project already holds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from config.fieldcrypt import keyed_hash, keyed_hashes


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(value) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def prompt_messages_hash(messages: list[dict]) -> str:
    return content_hash([{"role": m["role"], "content": m["content"]} for m in messages])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def task_content_hash(kind: str, prompt_hash: str, response_hashes: Iterable[str]) -> str:
    return content_hash([kind, prompt_hash, list(response_hashes)])


def sealed_content_hash(plain_hash: str) -> str:
    """What a sealed prompt, response or task stores in place of its plain ``content_hash``:
    a keyed hash of it (``config.fieldcrypt.keyed_hash``), which no guess can be checked
    against without the field keys."""
    return keyed_hash(plain_hash)


def content_hash_candidates(plain_hash: str) -> list[str]:
    """Every stored hash that means "this content": the plain hash, and the keyed hash under
    each configured field key (a sealed row). De-duplication compares under all of them, so a
    re-import of a sealed text finds the sealed row and never brings the text back in clear."""
    return [plain_hash, *keyed_hashes(plain_hash)]
