"""Content hashes: the same prompt, response or task always hashes the same, so imports and
generated answers deduplicate against what a project already holds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable


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
