"""Submitting, editing and undoing labels (see ``annotation.services`` for the guarantees).

The edit window (``label_edit_window``) is the one rule for how long an author may change a
label: ``label_edit`` enforces it, the "my labels" pages show it, and ``task_undo`` (withdraw
the last submit, or take back a skip) is bounded by it as well as by its own short window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.labels import canonical_payload, clean_flags
from annotation.models import (
    IdempotencyRecord,
    Label,
    LabelRevision,
    LabelSource,
    Lease,
    LeaseState,
    Task,
    TaskKind,
    TaskStatus,
)
from annotation.quality.models import Adjudication
from annotation.selectors import task_items
from annotation.services import hooks
from annotation.services.claims import _grant_lease, _room_for
from annotation.services.hashing import content_hash
from annotation.services.hooks import _after_commit_task_changed
from annotation.services.project_settings import project_allowed_flags, project_label_edit_window
from annotation.services.proposals import proposal_context, proposal_decide
from config.errors import Conflict, Unprocessable, ValidationFailed


def _task_context(task: Task) -> tuple[list[int], dict[int, str]]:
    items = task_items(task)
    return [i.response_id for i in items], {i.response_id: i.response.text for i in items}


def _idempotent_replay(user, key: str, scope: str, request_hash: str):
    record = IdempotencyRecord.objects.filter(user=user, key=key).first()
    if record is None:
        return None
    if record.scope != scope or record.request_hash != request_hash:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
        )
    return record


def _already_labelled(task: Task, annotator) -> Conflict | None:
    """The 409 for a second label on the same task, naming the label to edit instead."""
    existing = Label.objects.filter(task=task, annotator=annotator).first()
    if existing is None:
        return None
    return Conflict(
        "you already labelled this task; edit your label instead",
        code="already_labelled",
        label_id=existing.pk,
    )


class SubmitResult:
    """What a submit returns: the label, and whether this call created it or replayed."""

    def __init__(self, label: Label, replayed: bool):
        self.label = label
        self.replayed = replayed


def label_submit(
    *,
    task: Task,
    annotator,
    payload: dict,
    flags=None,
    duration_ms: int | None = None,
    source: str = LabelSource.UI,
    idempotency_key: str | None = None,
) -> SubmitResult:
    """Store one label in one transaction; see ``annotation.services`` for the guarantees."""
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 8 <= len(idempotency_key) <= 200
    ):
        raise ValidationFailed("Idempotency-Key must be 8 to 200 characters")
    if duration_ms is not None and (
        not isinstance(duration_ms, int) or not 0 <= duration_ms <= 86_400_000
    ):
        raise ValidationFailed("duration_ms must be a whole number of milliseconds")
    scope = f"label_submit:{task.pk}"
    request_hash = content_hash({"payload": payload, "flags": flags, "task": task.pk})
    try:
        with transaction.atomic():
            return _label_submit_locked(
                task,
                annotator,
                payload,
                flags,
                duration_ms,
                source,
                idempotency_key,
                scope,
                request_hash,
            )
    except IntegrityError:
        # A concurrent retry with the same key (or for the same task) won the race; the
        # stored outcome is now committed and visible.
        if idempotency_key:
            record = _idempotent_replay(annotator, idempotency_key, scope, request_hash)
            if record is not None:
                return SubmitResult(Label.objects.get(pk=record.response["label_id"]), True)
        conflict = _already_labelled(task, annotator)
        if conflict is not None:
            raise conflict from None
        raise


def _label_submit_locked(
    task, annotator, payload, flags, duration_ms, source, key, scope, request_hash
) -> SubmitResult:
    now = timezone.now()
    project = task.project  # as the access gate loaded it; only the rubric is read
    # Lock the task row only (a join would lock the project row too, and every submit of
    # the project would queue behind it).
    task = Task.objects.select_for_update().get(pk=task.pk)
    task.project = project
    if key:
        record = _idempotent_replay(annotator, key, scope, request_hash)
        if record is not None:
            return SubmitResult(Label.objects.get(pk=record.response["label_id"]), True)
    lease = Lease.objects.filter(task=task, annotator=annotator).first()
    if lease is None or lease.state == LeaseState.SUBMITTED:
        # An annotator's label exists only beside a submitted lease (submit closes the lease
        # in its own transaction) or with no lease at all (imported). Anything else is still
        # refused by the unique constraint, which label_submit turns into the same 409.
        conflict = _already_labelled(task, annotator)
        if conflict is not None:
            raise conflict
    if lease is None:
        raise Conflict("you hold no lease on this task", code="no_lease")
    if lease.state == LeaseState.SKIPPED:
        raise Conflict("you skipped this task", code="skipped")
    lease_live = lease.state == LeaseState.ACTIVE and lease.expires_at > now
    if not lease_live and not _room_for(task, annotator, now):
        raise Conflict(
            "your lease expired and the task already has enough labels", code="lease_lost"
        )
    if task.label_count >= task.required_labels:
        # A live lease no longer guarantees a slot once the overlap was lowered (or a gold
        # task returned to the pool, or an import labelled it): refuse instead of breaking
        # the task_labels_within_overlap constraint (an IntegrityError, a 500 the browser's
        # outbox would retry forever).
        raise Conflict("this task already has all the labels it needs", code="task_full")
    item_ids, texts = _task_context(task)
    canonical = canonical_payload(
        task.kind,
        payload,
        item_ids=item_ids,
        shown_order=lease.shown_order,
        rubric=task.project.rubric,
        texts=texts,
        proposal=proposal_context(task) if task.kind == TaskKind.CONFIRM else None,
    )
    label = Label.objects.create(
        task=task,
        annotator=annotator,
        kind=task.kind,
        payload=canonical,
        shown_order=lease.shown_order,
        flags=_project_flags(task.project, flags),
        duration_ms=duration_ms,
        server_elapsed_ms=int((now - lease.created_at).total_seconds() * 1000),
        source=source,
    )
    task.label_count += 1
    fields = ["label_count"]
    if task.label_count >= task.required_labels:
        task.status = TaskStatus.DONE
        task.completed_at = now
        fields += ["status", "completed_at"]
    task.save(update_fields=fields)
    if task.kind == TaskKind.CONFIRM:
        proposal_decide(label=label)
    lease.state = LeaseState.SUBMITTED
    lease.closed_at = now
    lease.save(update_fields=["state", "closed_at"])
    if key:
        IdempotencyRecord.objects.create(
            user=annotator,
            key=key,
            scope=scope,
            request_hash=request_hash,
            status_code=201,
            response={"label_id": label.pk},
        )
    for hook in hooks.label_submitted_hooks:
        transaction.on_commit(lambda hook=hook, label=label: hook(label))
    return SubmitResult(label, False)


@transaction.atomic
def label_edit(*, label: Label, editor, payload: dict, flags=None) -> Label:
    """Change your own label; the previous content is kept as a revision."""
    label = (
        Label.objects.select_for_update().select_related("task", "task__project").get(pk=label.pk)
    )
    if label.annotator_id != editor.pk:
        raise Conflict("only the author can edit a label", code="not_author")
    if label.reviewed_at is not None:
        raise Conflict("this label was reviewed and can no longer be edited", code="reviewed")
    _refuse_decided_proposal(label)
    if not label_edit_window(label=label).open:
        raise Conflict(
            "the project's edit window for this label has closed", code="edit_window_closed"
        )
    item_ids, texts = _task_context(label.task)
    canonical = canonical_payload(
        label.kind,
        payload,
        item_ids=item_ids,
        shown_order=label.shown_order,
        rubric=label.task.project.rubric,
        texts=texts,
    )
    LabelRevision.objects.create(
        label=label,
        version=label.version,
        payload=label.payload,
        flags=label.flags,
        edited_by=editor,
    )
    label.payload = canonical
    if flags is not None:
        label.flags = _project_flags(label.task.project, flags)
    label.version += 1
    label.save(update_fields=["payload", "flags", "version", "updated_at"])
    _after_commit_task_changed(label.task.project_id, label.task_id)
    return label


def _project_flags(project, flags) -> list[str]:
    """``clean_flags``, then only the flags the project allows (its ``flags.allowed`` setting)."""
    cleaned = clean_flags(flags)
    allowed = project_allowed_flags(project)
    refused = [f for f in cleaned if f not in allowed]
    if refused:
        raise ValidationFailed(
            f"this project does not use the flags {refused}; it allows {list(allowed)}",
            code="invalid_label",
            field="flags",
        )
    return cleaned


@dataclass(frozen=True)
class EditWindow:
    open: bool  # may the author change the label now
    until: datetime | None  # when the project's edit window closes; None: never


def label_edit_window(*, label: Label, now: datetime | None = None) -> EditWindow:
    """Whether the author may still change ``label``: not reviewed, not a decision on a
    model's proposal, and within the project's edit window (``labels.edit_window_hours``;
    none set: no time limit)."""
    now = now or timezone.now()
    window = project_label_edit_window(label.task.project)
    until = None if window is None else label.created_at + window
    return EditWindow(
        open=label.reviewed_at is None
        and label.kind != TaskKind.CONFIRM
        and (until is None or now <= until),
        until=until,
    )


def _refuse_decided_proposal(label: Label) -> None:
    if label.kind == TaskKind.CONFIRM:
        # The decision already put the proposal into the pool (or kept it out): changing or
        # withdrawing it would leave a confirmed prompt with no confirmation behind it.
        raise Conflict(
            "a decision on a model's proposal cannot be changed", code="proposal_decided"
        )


def undo_window() -> timedelta:
    return timedelta(seconds=settings.TANDEM_UNDO_SECONDS)


@transaction.atomic
def task_undo(*, task: Task, annotator) -> Lease:
    """Undo ``annotator``'s submit or skip of ``task`` within ``TANDEM_UNDO_SECONDS``: the label
    is withdrawn (deleted with its revisions and idempotency record; the task's count goes
    down and a done task opens again), or the skip is taken back; either way the lease is
    live again, so the task comes back to its annotator.

    Refused (409, nothing changed): nothing to undo, the window passed (or the project's edit
    window closed), the label was reviewed, adjudicated, or frozen into a dataset snapshot,
    or the task has no room for the annotator any more (a skipped task others took)."""
    now = timezone.now()
    task = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task.pk)
    lease = Lease.objects.filter(task=task, annotator=annotator).first()
    label = Label.objects.filter(task=task, annotator=annotator).first()
    if label is not None:
        label.task = task
        _undo_label(task, lease, label, now)
    elif lease is not None and lease.state == LeaseState.SKIPPED:
        if now > (lease.closed_at or now) + undo_window():
            raise Conflict(_window_passed("skip"), code="undo_window_closed")
        if not _room_for(task, annotator, now):
            raise Conflict(
                "the task went to other annotators after you skipped it", code="task_full"
            )
    else:
        raise Conflict("you have no submit or skip of this task to undo", code="nothing_to_undo")
    if lease is None:
        # An imported label has no lease; a label withdrawn by its author gets one.
        lease = _grant_lease(task, annotator, now, None)
    else:
        lease.state = LeaseState.ACTIVE
        lease.skip_reason = ""
        lease.closed_at = None
        lease.heartbeat_at = now
        lease.expires_at = now + timedelta(seconds=task.project.lease_seconds)
        lease.save(
            update_fields=["state", "skip_reason", "closed_at", "heartbeat_at", "expires_at"]
        )
    _after_commit_task_changed(task.project_id, task.pk)
    return lease


def _window_passed(what: str) -> str:
    return f"the {settings.TANDEM_UNDO_SECONDS} seconds to undo this {what} have passed"


def _undo_label(task: Task, lease: Lease | None, label: Label, now) -> None:
    if label.reviewed_at is not None:
        raise Conflict("this label was reviewed and can no longer be withdrawn", code="reviewed")
    _refuse_decided_proposal(label)
    if now > label.created_at + undo_window():
        raise Conflict(_window_passed("label"), code="undo_window_closed")
    if not label_edit_window(label=label, now=now).open:
        raise Conflict(
            "the project's edit window for this label has closed", code="edit_window_closed"
        )
    if Adjudication.objects.filter(task=task).exists():
        raise Conflict(
            "a reviewer has already decided this task; your label stays", code="task_closed"
        )
    if any(frozen(label) for frozen in hooks.label_frozen_guards):
        raise Conflict(
            "this label is already in a dataset snapshot and can no longer be withdrawn",
            code="label_in_snapshot",
        )
    IdempotencyRecord.objects.filter(
        user_id=label.annotator_id, scope=f"label_submit:{task.pk}"
    ).delete()
    label.delete()
    task.label_count -= 1
    fields = ["label_count"]
    if task.status == TaskStatus.DONE and task.label_count < task.required_labels:
        task.status = TaskStatus.OPEN
        task.completed_at = None
        fields += ["status", "completed_at"]
    task.save(update_fields=fields)
