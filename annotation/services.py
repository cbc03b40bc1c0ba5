"""Everything that changes annotation state. Views, the API and commands call these.

Concurrency model (the part peers get wrong):
- All changes to a task's leases and labels happen while holding that task's row lock
  (``SELECT ... FOR UPDATE``). The invariant ``labels + unexpired active leases <= k`` is
  checked under that lock, so no task ever receives more than ``k`` labels.
- ``task_claim_next`` finds a candidate with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (claimers
  never queue behind each other), then re-checks the counts with fresh statements after the
  lock is held (a READ COMMITTED snapshot taken before the lock can miss a lease that was
  committed just before it). On SQLite, transactions are IMMEDIATE (see settings), which
  serialises writers and makes the same code correct.
- ``label_submit`` is one transaction; the response is sent only after it commits. A unique
  constraint on (task, annotator) backs the check, and an ``Idempotency-Key`` makes retries
  safe: the same key and body return the stored result, the same key with another body is 422.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from annotation.labels import canonical_payload, clean_flags
from annotation.models import (
    DEFAULT_RUBRIC,
    IdempotencyRecord,
    Label,
    LabelRevision,
    LabelSource,
    Lease,
    LeaseState,
    Membership,
    Project,
    Prompt,
    Response,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.roles import Role
from annotation.selectors import task_items
from config.errors import Conflict, Unprocessable, ValidationFailed

User = get_user_model()

# Hooks other apps register (quality control, review cycle) without this module importing
# them: called after commit with the new label.
label_submitted_hooks: list[Callable[[Label], None]] = []
# Called inside the claim transaction before the normal queue: may return a task id to serve
# first (gold items mixed into the queue). Signature: (project, annotator, exclude_ids) -> id.
claim_preemptors: list[Callable[..., int | None]] = []
# Called before claiming: may raise a DomainError to pause an annotator (failed gold checks).
claim_guards: list[Callable[[Project, object], None]] = []
# Called after commit when a label was edited or a task skipped: (project_id, [task ids]).
task_changed_hooks: list[Callable[[int, list[int]], None]] = []


def _after_commit_task_changed(project_id: int, task_id: int) -> None:
    for hook in task_changed_hooks:
        transaction.on_commit(lambda hook=hook: hook(project_id, [task_id]))


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(value) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- projects


def _validate_project_fields(fields: dict) -> None:
    kinds = fields.get("task_kinds")
    if kinds is not None and (
        not isinstance(kinds, list) or not kinds or any(k not in TaskKind.values for k in kinds)
    ):
        raise ValidationFailed(
            f"task_kinds must be a non-empty list drawn from {TaskKind.values}", field="task_kinds"
        )
    overlap = fields.get("overlap")
    if overlap is not None and not (isinstance(overlap, int) and 1 <= overlap <= 50):
        raise ValidationFailed("overlap must be a whole number from 1 to 50", field="overlap")
    lease = fields.get("lease_seconds")
    if lease is not None and not (isinstance(lease, int) and 30 <= lease <= 86_400):
        raise ValidationFailed("lease_seconds must be from 30 to 86400", field="lease_seconds")
    rubric = fields.get("rubric")
    if rubric is not None:
        names = set()
        if not isinstance(rubric, list) or not rubric:
            raise ValidationFailed("rubric must be a non-empty list", field="rubric")
        for dim in rubric:
            ok = (
                isinstance(dim, dict)
                and isinstance(dim.get("name"), str)
                and dim["name"].strip()
                and len(dim["name"]) <= 60
                and isinstance(dim.get("min"), int)
                and isinstance(dim.get("max"), int)
                and dim["min"] < dim["max"]
                and dim["max"] - dim["min"] <= 100
            )
            if not ok or dim["name"] in names:
                raise ValidationFailed(
                    "each rubric dimension needs a unique name and whole-number min < max",
                    field="rubric",
                )
            names.add(dim["name"])
    name = fields.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        raise ValidationFailed("name must be 1 to 200 characters", field="name")
    guidelines = fields.get("guidelines")
    if guidelines is not None and (not isinstance(guidelines, str) or len(guidelines) > 200_000):
        raise ValidationFailed("guidelines must be text under 200,000 characters")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(
    *,
    name: str,
    created_by,
    slug: str | None = None,
    guidelines: str = "",
    task_kinds: list[str] | None = None,
    overlap: int = 1,
    rubric: list[dict] | None = None,
    lease_seconds: int = settings.TANDEM_DEFAULT_LEASE_SECONDS,
    project_settings: dict | None = None,
) -> Project:
    fields = {
        "name": name,
        "guidelines": guidelines,
        "task_kinds": task_kinds or list(TaskKind.values),
        "overlap": overlap,
        "rubric": rubric or [dict(d) for d in DEFAULT_RUBRIC],
        "lease_seconds": lease_seconds,
    }
    _validate_project_fields(fields)
    if slug is not None and (slugify(slug) != slug or not slug):
        raise ValidationFailed("slug may hold only lowercase letters, digits and hyphens")
    if slug and Project.objects.filter(slug=slug).exists():
        raise Conflict(f"a project with slug {slug!r} exists", code="slug_taken")
    project = Project.objects.create(
        slug=slug or _unique_slug(name),
        created_by=created_by,
        options=project_settings or {},
        **fields,
    )
    if created_by is not None:
        Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    return project


EDITABLE_PROJECT_FIELDS = ("name", "guidelines", "task_kinds", "overlap", "rubric", "lease_seconds")


@transaction.atomic
def project_update(*, project: Project, **fields) -> Project:
    unknown = set(fields) - set(EDITABLE_PROJECT_FIELDS)
    if unknown:
        raise ValidationFailed(f"these fields cannot be changed: {sorted(unknown)}")
    # A field sent as null is not "absent" (DRF lets a form's JSON "null" through as None):
    # every editable field is NOT NULL, so say so instead of failing in the database.
    nulls = sorted(key for key, value in fields.items() if value is None)
    if nulls:
        raise ValidationFailed(f"these fields cannot be null: {nulls}", field=nulls[0])
    _validate_project_fields(fields)
    for key, value in fields.items():
        setattr(project, key, value)
    project.save(update_fields=[*fields, "updated_at"])
    if "overlap" in fields:
        # Open tasks follow the new overlap; a task never needs fewer labels than it has, so
        # one that already has more than the new overlap is done with what it has. Gold
        # tasks keep taking every annotator's label (annotation.quality owns their overlap).
        tasks = Task.objects.filter(project=project, status=TaskStatus.OPEN, gold__isnull=True)
        tasks.filter(label_count__lte=project.overlap).update(required_labels=project.overlap)
        tasks.filter(label_count__gt=project.overlap).update(required_labels=F("label_count"))
        tasks.filter(label_count__gte=F("required_labels")).update(
            status=TaskStatus.DONE, completed_at=timezone.now()
        )
    return project


@transaction.atomic
def membership_set(*, project: Project, user, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {Role.values}", field="role")
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user) -> None:
    membership = Membership.objects.filter(project=project, user=user).first()
    if membership is None:
        return
    if (
        membership.role == Role.ADMIN
        and not Membership.objects.filter(project=project, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    ):
        raise Conflict("a project keeps at least one admin", code="last_admin")
    membership.delete()
    Lease.objects.filter(task__project=project, annotator=user, state=LeaseState.ACTIVE).update(
        state=LeaseState.RELEASED, closed_at=timezone.now()
    )


def user_create(*, username: str, password: str | None, email: str = "", is_staff=False):
    if User.objects.filter(username=username).exists():
        raise Conflict(f"user {username!r} exists", code="user_exists")
    user = User(username=username, email=email, is_staff=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.save()
    return user


def external_annotator(name: str):
    """The account that stands for labels imported from elsewhere; it can never log in."""
    username = f"external:{slugify(name)[:100] or 'import'}"
    user, created = User.objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


# --------------------------------------------------------------------------- content


def prompt_messages_hash(messages: list[dict]) -> str:
    return content_hash([{"role": m["role"], "content": m["content"]} for m in messages])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def task_content_hash(kind: str, prompt_hash: str, response_hashes: Iterable[str]) -> str:
    return content_hash([kind, prompt_hash, list(response_hashes)])


@transaction.atomic
def task_create(
    *,
    project: Project,
    messages: list[dict],
    kind: str,
    responses: list[dict],
    source: str = "",
    priority: int = 0,
    metadata: dict | None = None,
) -> tuple[Task, bool]:
    """Create (or find) a task for a prompt and its responses.

    ``responses`` items: ``{"text", "origin", "model_name", "generation"}``. Returns
    ``(task, created)``; the same prompt, kind and responses never make a second task.
    """
    counts = {TaskKind.PAIRWISE: (2, 2), TaskKind.RANKING: (3, 20)}
    low, high = counts.get(kind, (1, 20))
    if kind not in TaskKind.values:
        raise ValidationFailed(f"unknown task kind {kind!r}")
    if not low <= len(responses) <= high:
        raise ValidationFailed(f"a {kind} task takes {low} to {high} responses")
    prompt_hash = prompt_messages_hash(messages)
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=prompt_hash,
        defaults={"messages": messages, "source": source},
    )
    hashes = [text_hash(r["text"]) for r in responses]
    if len(set(hashes)) != len(hashes):
        raise ValidationFailed("a task cannot show the same response twice")
    task_hash = task_content_hash(kind, prompt_hash, hashes)
    existing = Task.objects.filter(project=project, content_hash=task_hash).first()
    if existing:
        return existing, False
    response_rows = []
    for r, h in zip(responses, hashes, strict=True):
        response, _ = Response.objects.get_or_create(
            prompt=prompt,
            origin=r.get("origin", "import"),
            model_name=r.get("model_name", ""),
            content_hash=h,
            defaults={"text": r["text"], "generation": r.get("generation", {})},
        )
        response_rows.append(response)
    task = Task.objects.create(
        project=project,
        prompt=prompt,
        kind=kind,
        required_labels=project.overlap,
        content_hash=task_hash,
        source=source,
        priority=priority,
        metadata=metadata or {},
    )
    TaskItem.objects.bulk_create(
        TaskItem(task=task, response=r, position=i) for i, r in enumerate(response_rows)
    )
    return task, True


# --------------------------------------------------------------------------- leases


def _shown_order(task_id: int, annotator_id: int, item_ids: list[int]) -> list[int]:
    """Randomised per annotator, but stable: a re-lease shows the same sides again."""
    order = list(item_ids)
    random.Random(f"{task_id}:{annotator_id}").shuffle(order)
    return order


def _lock_next_candidate(project: Project, annotator, exclude: list[int], now) -> Task | None:
    """The best open task ``annotator`` may take, locked, or ``None``.

    On PostgreSQL one statement finds and locks it: ``FOR UPDATE OF task SKIP LOCKED`` passes
    busy rows over and locks only the task row, never its project. The partial index
    ``task_open_queue`` serves the ``ORDER BY``, so done tasks are never scanned. The lease
    counts in the ``WHERE`` are from the statement's snapshot, so the caller checks them again
    under the lock; the task is then read with a fresh statement too.

    Written in SQL because it runs on every claim and building the same statement with the
    ORM (three correlated subqueries) cost ~2.5 ms of CPU per claim, more than all the rest
    of the claim together. ``tests/annotation/test_claims.py`` pins what it must select.
    """
    tasks, leases, labels = Task._meta.db_table, Lease._meta.db_table, Label._meta.db_table
    # Gold tasks (annotation.quality) reach annotators only through the gold preemptor.
    gold = Task._meta.get_field("gold").related_model._meta.db_table
    params: list = [project.pk, TaskStatus.OPEN]
    excluded = ""
    if exclude:
        excluded = f"AND t.id NOT IN ({', '.join(['%s'] * len(exclude))})"
        params += exclude
    live_since = connection.ops.adapt_datetimefield_value(now)
    params += [
        annotator.pk, LeaseState.SUBMITTED, LeaseState.SKIPPED,  # closed by this annotator
        annotator.pk,  # labelled by this annotator
        LeaseState.ACTIVE, live_since,  # live leases
    ]  # fmt: skip
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = "FOR UPDATE OF t SKIP LOCKED"
    sql = f"""
        SELECT t.id FROM {tasks} t
        WHERE t.project_id = %s AND t.status = %s {excluded}
          AND NOT EXISTS (SELECT 1 FROM {gold} g WHERE g.task_id = t.id)
          AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.task_id = t.id
                          AND l.annotator_id = %s AND l.state IN (%s, %s))
          AND NOT EXISTS (SELECT 1 FROM {labels} b WHERE b.task_id = t.id AND b.annotator_id = %s)
          AND t.label_count + (SELECT count(*) FROM {leases} a WHERE a.task_id = t.id
                               AND a.state = %s AND a.expires_at > %s) < t.required_labels
        ORDER BY t.priority DESC, t.id
        LIMIT 1 {lock}
    """  # noqa: S608  (table names from the models, values as parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return Task.objects.select_related("prompt").get(pk=row[0])


def _leases_under_lock(task: Task, annotator, now) -> tuple[int, Lease | None]:
    """Other annotators' live leases on ``task``, and ``annotator``'s own lease if any.

    A fresh statement, run while holding the task's row lock: it sees every lease committed
    before the lock was taken, which the statement that found the task may have missed.
    """
    rows = Lease.objects.filter(task=task).filter(
        Q(annotator=annotator) | Q(state=LeaseState.ACTIVE, expires_at__gt=now)
    )
    others, mine = 0, None
    for lease in rows:
        if lease.annotator_id == annotator.pk:
            mine = lease
        else:
            others += 1
    return others, mine


def _room_for(task: Task, annotator, now) -> bool:
    """Whether ``task`` (as read under its row lock) can take one more of ``annotator``'s."""
    if task.status != TaskStatus.OPEN:
        return False
    others, _ = _leases_under_lock(task, annotator, now)
    return task.label_count + others < task.required_labels


def _grant_lease(task: Task, annotator, now, mine: Lease | None) -> Lease:
    expires = now + timedelta(seconds=task.project.lease_seconds)
    if mine is None:
        # Under the task's row lock nobody else can create this (task, annotator) lease.
        item_ids = [item.response_id for item in task_items(task)]
        return Lease.objects.create(
            task=task,
            annotator=annotator,
            heartbeat_at=now,
            expires_at=expires,
            shown_order=_shown_order(task.pk, annotator.pk, item_ids),
        )
    mine.task = task
    mine.state = LeaseState.ACTIVE
    mine.heartbeat_at = now
    mine.expires_at = expires
    mine.closed_at = None
    mine.created_at = now
    mine.save(update_fields=["state", "heartbeat_at", "expires_at", "closed_at", "created_at"])
    return mine


def task_claim_next(*, project: Project, annotator, exclude_task_ids=()) -> Lease | None:
    """Hand ``annotator`` a task they have not labelled, honouring overlap ``k`` exactly.

    Returns the lease (already held ones first), or ``None`` when nothing is left.
    ``exclude_task_ids`` lets the browser preload the next task while showing the current.
    """
    for guard in claim_guards:
        guard(project, annotator)
    exclude = [int(t) for t in exclude_task_ids]
    now = timezone.now()
    # One statement for both questions: a live lease to hand back, and how many are held.
    live = list(
        Lease.objects.select_related("task", "task__prompt")
        .filter(
            annotator=annotator,
            task__project=project,
            state=LeaseState.ACTIVE,
            expires_at__gt=now,
        )
        .order_by("created_at", "id")
    )
    for lease in live:
        if lease.task.status == TaskStatus.OPEN and lease.task_id not in exclude:
            lease.task.project = project
            return lease
    if len(live) >= settings.TANDEM_MAX_ACTIVE_LEASES_PER_ANNOTATOR:
        raise Conflict(
            "finish or skip the tasks you hold before taking another", code="too_many_leases"
        )
    tried: list[int] = []
    for _attempt in range(8):
        with transaction.atomic():
            task = None
            for preempt in claim_preemptors:
                task_id = preempt(project, annotator, exclude + tried)
                if task_id:
                    task = (
                        Task.objects.select_for_update(of=("self",))
                        .select_related("prompt")
                        .get(pk=task_id)
                    )
                    break
            if task is None:
                task = _lock_next_candidate(project, annotator, exclude + tried, now)
                if task is None:
                    return None
            task.project = project
            others, mine = _leases_under_lock(task, annotator, now)
            closed = mine is not None and mine.state in (LeaseState.SUBMITTED, LeaseState.SKIPPED)
            if (
                closed
                or task.status != TaskStatus.OPEN
                or task.label_count + others >= task.required_labels
            ):
                tried.append(task.pk)
                continue
            return _grant_lease(task, annotator, now, mine)
    return None


def _lease_of(task: Task, annotator) -> Lease:
    lease = Lease.objects.filter(task=task, annotator=annotator).first()
    if lease is None:
        raise Conflict("you hold no lease on this task", code="no_lease")
    return lease


@transaction.atomic
def lease_heartbeat(*, task: Task, annotator) -> Lease:
    """Extend the lease; an expired one is renewed only if the task still has room."""
    now = timezone.now()
    task = Task.objects.select_for_update(of=("self",)).select_related("project").get(pk=task.pk)
    lease = _lease_of(task, annotator)
    if lease.state != LeaseState.ACTIVE:
        raise Conflict(f"the lease is {lease.state}", code="lease_closed")
    if lease.expires_at <= now and not _room_for(task, annotator, now):
        raise Conflict("the lease expired and the task went to others", code="lease_lost")
    lease.heartbeat_at = now
    lease.expires_at = now + timedelta(seconds=task.project.lease_seconds)
    lease.save(update_fields=["heartbeat_at", "expires_at"])
    return lease


@transaction.atomic
def task_skip(*, task: Task, annotator, reason: str = "") -> Lease:
    """Record a skip: the task is not offered to this annotator again."""
    if len(reason) > 500:
        raise ValidationFailed("reason must be under 500 characters", field="reason")
    task = Task.objects.select_for_update().get(pk=task.pk)
    lease = _lease_of(task, annotator)
    if lease.state == LeaseState.SUBMITTED:
        raise Conflict("you already labelled this task", code="already_labelled")
    lease.state = LeaseState.SKIPPED
    lease.skip_reason = reason
    lease.closed_at = timezone.now()
    lease.save(update_fields=["state", "skip_reason", "closed_at"])
    _after_commit_task_changed(task.project_id, task.pk)
    return lease


@transaction.atomic
def task_release(*, task: Task, annotator) -> None:
    Lease.objects.filter(task=task, annotator=annotator, state=LeaseState.ACTIVE).update(
        state=LeaseState.RELEASED, closed_at=timezone.now()
    )


# --------------------------------------------------------------------------- labels


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
    """Store one label in one transaction; see the module docstring for the guarantees."""
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
        existing = Label.objects.filter(task=task, annotator=annotator).first()
        if existing is not None:
            raise Conflict(
                "you already labelled this task; edit your label instead",
                code="already_labelled",
                label_id=existing.pk,
            ) from None
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
        existing = Label.objects.filter(task=task, annotator=annotator).first()
        if existing is not None:
            raise Conflict(
                "you already labelled this task; edit your label instead",
                code="already_labelled",
                label_id=existing.pk,
            )
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
    )
    label = Label.objects.create(
        task=task,
        annotator=annotator,
        kind=task.kind,
        payload=canonical,
        shown_order=lease.shown_order,
        flags=clean_flags(flags),
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
    for hook in label_submitted_hooks:
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
        label.flags = clean_flags(flags)
    label.version += 1
    label.save(update_fields=["payload", "flags", "version", "updated_at"])
    _after_commit_task_changed(label.task.project_id, label.task_id)
    return label


def leases_expire_stale(*, older_than_seconds: int = 0) -> int:
    """Mark long-expired active leases released (housekeeping; they already free slots)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return Lease.objects.filter(state=LeaseState.ACTIVE, expires_at__lt=cutoff).update(
        state=LeaseState.RELEASED, closed_at=timezone.now()
    )
