"""Key rotation for the fields encrypted at rest (``config.fieldcrypt``)."""

from __future__ import annotations

import json

from django.db import transaction
from django.db.models import Q

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import ENCRYPTED_PAYLOAD_KEYS, Label, LabelRevision, Prompt, Response, Task
from annotation.services.hashing import (
    content_hash_candidates,
    prompt_messages_hash,
    sealed_content_hash,
    task_content_hash,
    text_hash,
)
from annotation.services.sealing import SEALED_PAYLOAD_KEY
from config.fieldcrypt import decrypt_text, encrypt_text, is_encrypted

_BATCH = 500


def _payload_rewritten(payload) -> bool:
    """Whether the payload holds a value to write again: an encrypted key (the field encrypts
    it on save) or a sealed correction's texts (an ``enc1:`` token kept as such: re-encrypted
    here, under the first key)."""
    if not isinstance(payload, dict):
        return False
    if is_encrypted(payload.get(SEALED_PAYLOAD_KEY)):
        payload[SEALED_PAYLOAD_KEY] = encrypt_text(decrypt_text(payload[SEALED_PAYLOAD_KEY]))
        return True
    return any(payload.get(k) for k in ENCRYPTED_PAYLOAD_KEYS)


def _rekeyed(stored: str, plain: str) -> str:
    """The keyed hash of ``plain`` under the first key, if ``stored`` is its keyed hash under
    any configured key; else ``stored`` unchanged (a hash computed some other way)."""
    return sealed_content_hash(plain) if stored in content_hash_candidates(plain)[1:] else stored


def _sealed_texts_rotate() -> dict[str, int]:
    """Sealed prompts and responses: ``sealed_text`` written again (under the first key) and
    their keyed content hashes, and their tasks', recomputed under the first key's HMAC key."""
    counts = {}
    plain_prompt, plain_response = {}, {}
    with transaction.atomic():
        for model, plain_of, into in (
            (Prompt, lambda p: prompt_messages_hash(json.loads(p.sealed_text)), plain_prompt),
            (Response, lambda r: text_hash(r.sealed_text), plain_response),
        ):
            rows = list(model.objects.select_for_update().filter(sealed_at__isnull=False))
            for row in rows:
                into[row.pk] = plain_of(row)
                row.content_hash = _rekeyed(row.content_hash, into[row.pk])
            model.objects.bulk_update(rows, ["sealed_text", "content_hash"])
            counts[model._meta.label] = len(rows)
        showing = Task.objects.filter(
            Q(prompt_id__in=list(plain_prompt)) | Q(items__response_id__in=list(plain_response))
        ).values("pk")
        tasks = list(
            Task.objects.select_for_update()
            .filter(pk__in=showing)
            .select_related("prompt")
            .prefetch_related("items__response")
        )
        for task in tasks:
            prompt_hash = plain_prompt.get(task.prompt_id, task.prompt.content_hash)
            items = sorted(task.items.all(), key=lambda i: i.position)
            hashes = [plain_response.get(i.response_id, i.response.content_hash) for i in items]
            task.content_hash = _rekeyed(
                task.content_hash, task_content_hash(task.kind, prompt_hash, hashes)
            )
        Task.objects.bulk_update(tasks, ["content_hash"])
        counts["annotation.Task"] = len(tasks)
    return counts


def field_keys_rotate(*, actor=None) -> dict[str, int]:
    """Read every encrypted value (any key of ``TANDEM_FIELD_KEYS`` decrypts) and write it back
    (the first key encrypts), plain values written before encryption included; sealed texts'
    keyed hashes are recomputed under the first key. Batches commit one by one, so a long
    rotation holds no lock for long; running it again is harmless. A value no key can decrypt
    stops it with ``FieldKeyError`` before that batch is written."""
    counts = {}
    for model in (Label, LabelRevision):
        rewritten = 0
        last = 0
        while True:
            with transaction.atomic():
                rows = list(
                    model.objects.filter(pk__gt=last).order_by("pk").only("pk", "payload")[:_BATCH]
                )
                if not rows:
                    break
                last = rows[-1].pk
                changed = [r for r in rows if _payload_rewritten(r.payload)]
                model.objects.bulk_update(changed, ["payload"])
                rewritten += len(changed)
        counts[model._meta.label] = rewritten
    counts.update(_sealed_texts_rotate())
    data_audit_record(
        action=DataAuditAction.FIELD_KEYS_ROTATED, subject="fields", actor=actor, details=counts
    )
    return counts
