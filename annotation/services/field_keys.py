"""Key rotation for the fields encrypted at rest (``config.fieldcrypt``)."""

from __future__ import annotations

from django.db import transaction

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import ENCRYPTED_PAYLOAD_KEYS, Label, LabelRevision

_BATCH = 500


def field_keys_rotate(*, actor=None) -> dict[str, int]:
    """Read every encrypted value (any key of ``TANDEM_FIELD_KEYS`` decrypts) and write it back
    (the first key encrypts), plain values written before encryption included. Batches commit
    one by one, so a long rotation holds no lock for long; running it again is harmless. A value
    no key can decrypt stops it with ``FieldKeyError`` before that batch is written."""
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
                changed = [
                    r
                    for r in rows
                    if isinstance(r.payload, dict)
                    and any(r.payload.get(k) for k in ENCRYPTED_PAYLOAD_KEYS)
                ]
                model.objects.bulk_update(changed, ["payload"])
                rewritten += len(changed)
        counts[model._meta.label] = rewritten
    data_audit_record(
        action=DataAuditAction.FIELD_KEYS_ROTATED, subject="fields", actor=actor, details=counts
    )
    return counts
