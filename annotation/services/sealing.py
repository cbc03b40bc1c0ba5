"""Sealing a personal-data text (issue 15, finding 12): a project admin takes a prompt or a
response that became data out of the clear, while its labels stay valid.

``text_seal`` moves the clear text into ``sealed_text`` (``enc1:`` Fernet, so
``rotate_field_keys`` covers it) and leaves ``SEALED_PLACEHOLDER`` where every page, API,
render cache, search and new snapshot reads it. In the same transaction:

- the row's ``content_hash``, and those of the tasks showing it, become keyed hashes
  (``hashing.sealed_content_hash``): a guess of the text can no longer be confirmed from the
  database, and de-duplication (``content_hash_candidates``) still recognises a re-import;
- correction labels of a sealed response (and their revisions) keep their judgement, but their
  ``original_text``, ``corrected_text`` and ``diff`` move, encrypted, into ``sealed_text``;
  a confirmed proposal that produced the text shows the placeholder too;
- open tasks showing it are closed (nobody labels a placeholder), live leases released;
  labels of done tasks stay, so quality figures and adjudications hold;
- ``hooks.text_sealed_hooks``: snapshots holding it are withdrawn (``rlhf.snapshots``), the
  runs and model versions trained on them listed;
- one ``text_sealed`` event in the data audit log, with all of the above.

Sealing on a ``personal_data`` flag alone would let any annotator blank out data: it is the
project admin's decision (the API gate: ``access_project`` with ``manage``).
"""

from __future__ import annotations

import json

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import (
    SEALED_PLACEHOLDER,
    Label,
    LabelRevision,
    Lease,
    LeaseState,
    Project,
    Prompt,
    Proposal,
    Response,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.rendering import markdown_to_safe_html
from annotation.services import hooks
from annotation.services.hashing import (
    content_hash_candidates,
    prompt_messages_hash,
    sealed_content_hash,
    task_content_hash,
    text_hash,
)
from config.errors import Conflict, ValidationFailed
from config.fieldcrypt import decrypt_text, encrypt_text

MAX_REASON_CHARS = 500
# What a task shows that a project admin can seal (the API's ``text`` field).
SEALABLE_TEXTS = ("prompt", "response")
# A correction label's keys that quote the response (the original) or rework it.
CORRECTION_TEXT_KEYS = ("original_text", "corrected_text", "diff")
SEALED_PAYLOAD_KEY = "sealed_text"


def _payload_sealed(payload):
    """A correction payload with its texts moved, encrypted, under ``sealed_text`` (stored as
    an ``enc1:`` token, never decrypted on read, so no page shows it); None if it quotes none."""
    if not isinstance(payload, dict) or SEALED_PAYLOAD_KEY in payload:
        return None
    texts = {k: payload[k] for k in CORRECTION_TEXT_KEYS if isinstance(payload.get(k), str)}
    if not texts:
        return None
    return {
        **payload,
        "original_text": SEALED_PLACEHOLDER,
        "corrected_text": SEALED_PLACEHOLDER,
        "diff": "",
        SEALED_PAYLOAD_KEY: encrypt_text(json.dumps(texts, ensure_ascii=False)),
    }


def _correction_labels_seal(task_ids: list[int]) -> int:
    sealed = 0
    for model, task_field in ((Label, "task_id__in"), (LabelRevision, "label__task_id__in")):
        rows = list(
            model.objects.filter(**{task_field: task_ids}, **_correction_kind(model)).only(
                "pk", "payload"
            )
        )
        changed = []
        for row in rows:
            payload = _payload_sealed(row.payload)
            if payload is not None:
                row.payload = payload
                changed.append(row)
        model.objects.bulk_update(changed, ["payload"])
        sealed += len(changed)
    return sealed


def _correction_kind(model) -> dict:
    return {"kind": TaskKind.CORRECTION} if model is Label else {"label__kind": TaskKind.CORRECTION}


def _tasks_rekey_and_close(tasks: list[Task], *, already_keyed: set[int], now) -> int:
    """Key the content hash of each task not keyed by an earlier seal; close the open ones."""
    for task in tasks:
        if task.pk not in already_keyed:
            task.content_hash = sealed_content_hash(task.content_hash)
    Task.objects.bulk_update(tasks, ["content_hash"])
    open_ids = [t.pk for t in tasks if t.status == TaskStatus.OPEN]
    Task.objects.filter(pk__in=open_ids).update(status=TaskStatus.DONE, completed_at=now)
    Lease.objects.filter(task_id__in=open_ids, state=LeaseState.ACTIVE).update(
        state=LeaseState.RELEASED, closed_at=now
    )
    return len(open_ids)


def _keyed_task_ids(tasks: list[Task]) -> set[int]:
    """Tasks already showing a sealed text: their hash was keyed when it was sealed."""
    ids = [t.pk for t in tasks]
    return set(
        Task.objects.filter(pk__in=ids)
        .filter(Q(prompt__sealed_at__isnull=False) | Q(items__response__sealed_at__isnull=False))
        .values_list("pk", flat=True)
    )


def _reason_checked(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("reason: say why (it is audited)", field="reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationFailed(
            f"reason is longer than {MAX_REASON_CHARS} characters", field="reason"
        )
    return reason


def _locked(project, *, prompt, response):
    """(the row, its audit subject, the tasks showing it), locked."""
    if prompt is not None:
        row = Prompt.objects.select_for_update().get(pk=prompt.pk, project=project)
        tasks = Task.objects.select_for_update().filter(prompt=row)
        return row, f"prompt:{row.pk}", list(tasks.order_by("pk"))
    row = Response.objects.select_for_update().get(pk=response.pk, prompt__project=project)
    showing = TaskItem.objects.filter(response=row).values("task_id")
    tasks = Task.objects.select_for_update().filter(pk__in=showing)
    return row, f"response:{row.pk}", list(tasks.order_by("pk"))


@transaction.atomic
def text_seal(
    *,
    project: Project,
    actor,
    reason: str,
    prompt: Prompt | None = None,
    response: Response | None = None,
) -> dict:
    """Seal one prompt or one response of ``project`` (see the module's docstring) and return
    the audit event's details. Refused: a reason that is empty or too long (400, ``reason``), a
    text already sealed (409 ``already_sealed``)."""
    if (prompt is None) == (response is None):
        raise ValidationFailed("seal either a prompt or a response", field="text")
    reason = _reason_checked(reason)
    now = timezone.now()
    row, subject, tasks = _locked(project, prompt=prompt, response=response)
    if row.sealed_at is not None:
        raise Conflict(f"{subject.replace(':', ' ')} is already sealed", code="already_sealed")
    already_keyed = _keyed_task_ids(tasks)
    if prompt is not None:
        row.sealed_text = json.dumps(row.messages, ensure_ascii=False)
        row.messages = [
            {**m, "content": SEALED_PLACEHOLDER} if isinstance(m, dict) else m for m in row.messages
        ]
        fields = ["messages"]
        Proposal.objects.filter(result_prompt=row).update(
            text=SEALED_PLACEHOLDER, final_text=SEALED_PLACEHOLDER
        )
    else:
        row.sealed_text = row.text
        row.text = SEALED_PLACEHOLDER
        fields = ["text"]
        Proposal.objects.filter(result_response=row).update(
            text=SEALED_PLACEHOLDER, final_text=SEALED_PLACEHOLDER
        )
    row.content_hash = sealed_content_hash(row.content_hash)
    row.sealed_at = now
    row.save(update_fields=[*fields, "sealed_text", "sealed_at", "content_hash"])
    task_ids = [t.pk for t in tasks]
    details = {
        "reason": reason,
        "tasks": len(task_ids),
        "tasks_closed": _tasks_rekey_and_close(tasks, already_keyed=already_keyed, now=now),
        "correction_payloads_sealed": (
            _correction_labels_seal(task_ids) if response is not None else 0
        ),
    }
    for hook in hooks.text_sealed_hooks:
        hook(project=project, task_ids=task_ids, subject=subject, reason=reason, details=details)
    data_audit_record(
        action=DataAuditAction.TEXT_SEALED,
        subject=subject,
        actor=actor,
        project=project,
        details=details,
    )
    # This process's render cache is keyed by the text: the clear text leaves it now (other
    # processes never render it again, as no reader gets it, and evict it as they go).
    transaction.on_commit(markdown_to_safe_html.cache_clear)
    return details


def _payload_unsealed(payload):
    """A sealed correction payload with its texts back in clear; None if it holds none."""
    if not isinstance(payload, dict) or SEALED_PAYLOAD_KEY not in payload:
        return None
    texts = json.loads(decrypt_text(payload[SEALED_PAYLOAD_KEY]))
    return {k: v for k, v in payload.items() if k != SEALED_PAYLOAD_KEY} | texts


def _correction_labels_unseal(task_ids: list[int]) -> int:
    restored = 0
    for model, task_field in ((Label, "task_id__in"), (LabelRevision, "label__task_id__in")):
        changed = []
        for row in model.objects.filter(**{task_field: task_ids}, **_correction_kind(model)).only(
            "pk", "payload"
        ):
            payload = _payload_unsealed(row.payload)
            if payload is not None:
                row.payload = payload
                changed.append(row)
        model.objects.bulk_update(changed, ["payload"])
        restored += len(changed)
    return restored


def _tasks_unkey(tasks: list[Task]) -> None:
    """Each task that shows no sealed text any more gets its plain content hash back: the one
    its texts give (``task_content_hash``), if its stored hash is that one keyed. A hash made
    some other way (a proposal's confirm task) stays as it is."""
    still_keyed = _keyed_task_ids(tasks)
    for task in tasks:
        if task.pk in still_keyed:
            continue
        items = task.items.select_related("response").order_by("position")
        plain = task_content_hash(
            task.kind, task.prompt.content_hash, [i.response.content_hash for i in items]
        )
        if task.content_hash in content_hash_candidates(plain)[1:]:
            task.content_hash = plain
    Task.objects.bulk_update(tasks, ["content_hash"])


@transaction.atomic
def text_unseal(
    *,
    project: Project,
    actor,
    reason: str,
    prompt: Prompt | None = None,
    response: Response | None = None,
) -> dict:
    """``text_seal``'s inverse, for a seal made by mistake: the clear text comes back from
    ``sealed_text`` (and correction payloads' texts from theirs), the plain content hashes
    with it, and one ``text_unsealed`` audit event is written. What the seal did elsewhere
    stays: closed tasks stay closed (re-open them in the explorer), withdrawn snapshots stay
    withdrawn (build a new one), a proposal's texts stay the placeholder. Refused: a text that
    is not sealed (409 ``not_sealed``), a bad reason (400)."""
    if (prompt is None) == (response is None):
        raise ValidationFailed("unseal either a prompt or a response", field="text")
    reason = _reason_checked(reason)
    row, subject, tasks = _locked(project, prompt=prompt, response=response)
    if row.sealed_at is None:
        raise Conflict(f"{subject.replace(':', ' ')} is not sealed", code="not_sealed")
    if prompt is not None:
        row.messages = json.loads(row.sealed_text)
        row.content_hash = prompt_messages_hash(row.messages)
        fields = ["messages"]
    else:
        row.text = row.sealed_text
        row.content_hash = text_hash(row.text)
        fields = ["text"]
    row.sealed_text = ""
    row.sealed_at = None
    row.save(update_fields=[*fields, "sealed_text", "sealed_at", "content_hash"])
    task_ids = [t.pk for t in tasks]
    _tasks_unkey(tasks)
    details = {
        "reason": reason,
        "tasks": len(task_ids),
        "correction_payloads_restored": (
            _correction_labels_unseal(task_ids) if response is not None else 0
        ),
    }
    data_audit_record(
        action=DataAuditAction.TEXT_UNSEALED,
        subject=subject,
        actor=actor,
        project=project,
        details=details,
    )
    return details
