"""Reads of the data explorer: filters, keyset pages, one task's whole story, exports.

Pages are keyset pages on the task id, newest first (``after``/``before`` cursors), so page
500 costs what page 1 costs; the indexes ``task_project_id``, ``task_project_status_id`` and
``task_project_kind_id`` serve the walk, and ``prompt_messages_trgm`` (PostgreSQL) the text
search. Counts are capped (``COUNT_CAP``): an exact count of a million rows is a full scan.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import Http404

from annotation.labels import FLAGS
from annotation.models import (
    Label,
    LabelRevision,
    Lease,
    Project,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.opaque import item_ref
from annotation.quality.models import Adjudication, AdjudicationRequest, GoldTask, TaskQuality
from annotation.quality.selectors import review_task_view
from config.errors import ValidationFailed

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
COUNT_CAP = 10_000
MAX_QUERY_CHARS = 200
PREVIEW_CHARS = 160
REVIEW_STATES = ("requested", "decided", "none")
EXPORT_CHUNK = 500


@dataclass(frozen=True)
class ExplorerFilters:
    """What the explorer's table shows; every field optional (None: no filter)."""

    kind: str | None = None
    status: str | None = None
    agreement_min: float | None = None  # TaskQuality.agreement, 0..1 (tasks with 2+ labels)
    agreement_max: float | None = None
    annotator: str | None = None  # a username: tasks this person labelled
    flag: str | None = None  # one of annotation.labels.FLAGS, or "any"
    gold: bool | None = None
    review: str | None = None  # requested (sent to adjudication), decided, none
    created_from: date | None = None  # inclusive, UTC days
    created_to: date | None = None  # inclusive
    q: str | None = None  # text in the prompt

    def as_params(self) -> dict:
        return {k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in asdict(self).items() if v is not None}  # fmt: skip


def _choice(params, key, choices):
    value = (params.get(key) or "").strip()
    if not value:
        return None
    if value not in choices:
        raise ValidationFailed(f"{key} must be one of {list(choices)}", field=key)
    return value


def _share(params, key):
    text = (params.get(key) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValidationFailed(f"{key} must be a number from 0 to 1", field=key) from None
    if not 0 <= value <= 1:
        raise ValidationFailed(f"{key} must be a number from 0 to 1", field=key)
    return value


def _day(params, key):
    text = (params.get(key) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(f"{key} must be a date such as 2026-01-31", field=key) from None


def explorer_filters_parse(params: Mapping) -> ExplorerFilters:
    """Filters from query parameters; a bad one is a 400 naming its field."""
    gold = _choice(params, "gold", ("true", "false"))
    q = (params.get("q") or "").strip() or None
    if q is not None and len(q) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"q must be at most {MAX_QUERY_CHARS} characters", field="q")
    annotator = (params.get("annotator") or "").strip() or None
    if annotator is not None and len(annotator) > 150:
        raise ValidationFailed("annotator must be a username", field="annotator")
    filters = ExplorerFilters(
        kind=_choice(params, "kind", TaskKind.values),
        status=_choice(params, "status", TaskStatus.values),
        agreement_min=_share(params, "agreement_min"),
        agreement_max=_share(params, "agreement_max"),
        annotator=annotator,
        flag=_choice(params, "flag", (*FLAGS, "any")),
        gold=None if gold is None else gold == "true",
        review=_choice(params, "review", REVIEW_STATES),
        created_from=_day(params, "created_from"),
        created_to=_day(params, "created_to"),
        q=q,
    )
    if (
        filters.agreement_min is not None
        and filters.agreement_max is not None
        and filters.agreement_min > filters.agreement_max
    ):
        raise ValidationFailed("agreement_min is above agreement_max", field="agreement_min")
    return filters


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def explorer_queryset(project: Project, filters: ExplorerFilters) -> QuerySet[Task]:
    """The project's tasks that pass ``filters`` (unordered)."""
    tasks = Task.objects.filter(project=project)
    if filters.kind:
        tasks = tasks.filter(kind=filters.kind)
    if filters.status:
        tasks = tasks.filter(status=filters.status)
    if filters.agreement_min is not None:
        tasks = tasks.filter(quality__agreement__gte=filters.agreement_min)
    if filters.agreement_max is not None:
        tasks = tasks.filter(quality__agreement__lte=filters.agreement_max)
    if filters.annotator:
        user = get_user_model().objects.filter(username=filters.annotator).first()
        if user is None:
            return tasks.none()
        tasks = tasks.filter(Exists(Label.objects.filter(task=OuterRef("pk"), annotator=user)))
    if filters.flag:
        # The flags list cast to text: '["spam", "unsafe"]' on both databases (FLAGS are
        # plain words), so one lookup serves PostgreSQL and SQLite alike.
        labels = Label.objects.filter(task=OuterRef("pk")).alias(
            flags_text=Cast("flags", TextField())
        )
        if filters.flag == "any":
            labels = labels.exclude(flags_text="[]")
        else:
            labels = labels.filter(flags_text__contains=f'"{filters.flag}"')
        tasks = tasks.filter(Exists(labels))
    if filters.gold is not None:
        gold = Exists(GoldTask.objects.filter(task=OuterRef("pk")))
        tasks = tasks.filter(gold if filters.gold else ~gold)
    if filters.review:
        decided = Exists(Adjudication.objects.filter(task=OuterRef("pk")))
        requested = Exists(AdjudicationRequest.objects.filter(task=OuterRef("pk")))
        if filters.review == "decided":
            tasks = tasks.filter(decided)
        elif filters.review == "requested":
            tasks = tasks.filter(requested).exclude(decided)
        else:
            tasks = tasks.exclude(decided).exclude(requested)
    if filters.created_from:
        tasks = tasks.filter(created_at__gte=_midnight(filters.created_from))
    if filters.created_to:
        tasks = tasks.filter(created_at__lt=_midnight(filters.created_to) + timedelta(days=1))
    if filters.q:
        tasks = tasks.alias(prompt_text=Cast("prompt__messages", TextField())).filter(
            prompt_text__icontains=filters.q
        )
    return tasks


def _prompt_preview(messages) -> str:
    if not isinstance(messages, list):
        return ""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = (users or [m for m in messages if isinstance(m, dict)] or [{}])[-1]
    text = str(last.get("content", ""))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _rows(task_rows: list[dict]) -> list[dict]:
    """Table rows for tasks (dicts of Task values): their labels, agreement, gold, review."""
    ids = [t["id"] for t in task_rows]
    agreement = dict(
        TaskQuality.objects.filter(task_id__in=ids).values_list("task_id", "agreement")
    )
    gold = set(GoldTask.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    decided = set(Adjudication.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    requested = set(
        AdjudicationRequest.objects.filter(task_id__in=ids).values_list("task_id", flat=True)
    )
    annotators: dict[int, list[str]] = {}
    flags: dict[int, set[str]] = {}
    for task_id, username, label_flags in (
        Label.objects.filter(task_id__in=ids)
        .order_by("task_id", "id")
        .values_list("task_id", "annotator__username", "flags")
    ):
        annotators.setdefault(task_id, []).append(username)
        flags.setdefault(task_id, set()).update(label_flags or [])
    rows = []
    for t in task_rows:
        share = agreement.get(t["id"])
        review = "decided" if t["id"] in decided else "requested" if t["id"] in requested else None
        rows.append({
            "id": t["id"], "kind": t["kind"], "status": t["status"], "priority": t["priority"],
            "labels": t["label_count"], "required_labels": t["required_labels"],
            "agreement": None if share is None else round(share, 4),
            "gold": t["id"] in gold, "review": review,
            "annotators": annotators.get(t["id"], []),
            "flags": sorted(flags.get(t["id"], ())),
            "created_at": t["created_at"].isoformat(),
            "prompt": _prompt_preview(t["prompt__messages"]),
        })  # fmt: skip
    return rows


ROW_FIELDS = ("id", "kind", "status", "priority", "label_count", "required_labels",
              "created_at", "prompt__messages")  # fmt: skip


def explorer_page(
    project: Project,
    filters: ExplorerFilters,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> dict:
    """One page of the table, newest first. ``after``: the tasks older than that id (the next
    page); ``before``: the tasks newer than it (the previous page). Cursors of the pages
    beside it come back as ``next_after`` and ``prev_before`` (None at either end)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed(f"limit must be from 1 to {MAX_PAGE_SIZE}", field="limit")
    tasks = explorer_queryset(project, filters)
    if before is not None:
        window = list(tasks.filter(id__gt=before).order_by("id").values(*ROW_FIELDS)[: limit + 1])
        newer = len(window) > limit
        window = window[:limit][::-1]
        older = True
    else:
        page = tasks.filter(id__lt=after) if after is not None else tasks
        window = list(page.order_by("-id").values(*ROW_FIELDS)[: limit + 1])
        older = len(window) > limit
        window = window[:limit]
        newer = after is not None and bool(window) and tasks.filter(id__gt=window[0]["id"]).exists()
    if not window and before is not None:
        older = tasks.filter(id__lte=before).exists()
    return {
        "rows": _rows(window),
        "next_after": window[-1]["id"] if window and older else None,
        "prev_before": window[0]["id"] if window and newer else None,
        "filters": filters.as_params(),
    }


def explorer_count(project: Project, filters: ExplorerFilters) -> dict:
    """How many tasks pass the filters, counted up to ``COUNT_CAP`` (then "10,000 or more")."""
    counted = explorer_queryset(project, filters)[: COUNT_CAP + 1].count()
    return {"count": min(counted, COUNT_CAP), "capped": counted > COUNT_CAP}


def explorer_task_get(project: Project, task_id) -> Task:
    """A task of ``project`` (the caller passed its gate); another project's id is a 404."""
    task = Task.objects.filter(project=project, pk=task_id).select_related("prompt").first()
    if task is None:
        raise Http404("No such task.")
    return task


def explorer_seal_target(task: Task, *, text: str, response: int | None) -> dict:
    """``text_seal``'s keywords for the task's prompt, or for one of its responses named as the
    task view names it (its item's ref; a response id is accepted too). 400 naming
    ``response`` for one the task does not show."""
    if text == "prompt":
        return {"prompt": task.prompt}
    for item in task.items.select_related("response"):
        if response in (item_ref(item.pk), item.response_id):
            return {"response": item.response}
    raise ValidationFailed("response: not a response of this task", field="response")


def explorer_task_view(task: Task) -> dict:
    """One task's whole story: prompt, responses, labels with their revisions, leases
    (who was served it, skipped it, when), gold answer and adjudication."""
    view = review_task_view(task)
    # What a project admin may still seal as personal data (annotation.services.sealing).
    view["prompt_sealed"] = task.prompt.sealed_at is not None
    sealed = {
        item_ref(pk)
        for pk in task.items.filter(response__sealed_at__isnull=False).values_list("pk", flat=True)
    }
    for response in view["responses"]:
        response["sealed"] = response["id"] in sealed
    revisions: dict[int, list[dict]] = {}
    for r in (
        LabelRevision.objects.filter(label__task=task)
        .select_related("edited_by")
        .order_by("label_id", "version")
    ):
        revisions.setdefault(r.label_id, []).append({
            "version": r.version, "payload": r.payload, "flags": r.flags,
            "edited_by": r.edited_by.username if r.edited_by else None,
            "created_at": r.created_at.isoformat(),
        })  # fmt: skip
    for label in view["labels"]:
        label["revisions"] = revisions.get(label["id"], [])
    view["leases"] = [
        {
            "annotator": lease.annotator.username,
            "state": lease.state,
            "created_at": lease.created_at.isoformat(),
            "closed_at": lease.closed_at.isoformat() if lease.closed_at else None,
            "skip_reason": lease.skip_reason,
        }
        for lease in Lease.objects.filter(task=task).select_related("annotator").order_by("id")
    ]
    gold = GoldTask.objects.filter(task=task).first()
    request = AdjudicationRequest.objects.filter(task=task).select_related("requested_by").first()
    view.update({
        "status": task.status, "priority": task.priority, "label_count": task.label_count,
        "required_labels": task.required_labels, "created_at": task.created_at.isoformat(),
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
        "gold_expected": gold.expected if gold else None,
        "adjudication_requested": (
            {"by": request.requested_by.username if request.requested_by else None,
             "at": request.created_at.isoformat()} if request else None
        ),
    })  # fmt: skip
    return view


# --------------------------------------------------------------------------------------------
# Export of the filtered set
# --------------------------------------------------------------------------------------------

CSV_COLUMNS = ("task_id", "kind", "status", "priority", "labels", "required_labels",
               "agreement", "gold", "review", "created_at", "prompt", "responses",
               "label_payloads")  # fmt: skip


def _export_records(project: Project, filters: ExplorerFilters) -> Iterator[dict]:
    """Every task that passes the filters, oldest first, with its prompt, responses and
    labels; read in chunks by id (a keyset walk: no cursor held open between chunks)."""
    tasks = explorer_queryset(project, filters).order_by("id")
    last = 0
    while True:
        chunk = list(tasks.filter(id__gt=last).values(*ROW_FIELDS)[:EXPORT_CHUNK])
        if not chunk:
            return
        last = chunk[-1]["id"]
        ids = [t["id"] for t in chunk]
        responses: dict[int, list[dict]] = {}
        for task_id, position, response_id, text in (
            TaskItem.objects.filter(task_id__in=ids)
            .order_by("task_id", "position")
            .values_list("task_id", "position", "response_id", "response__text")
        ):
            responses.setdefault(task_id, []).append(
                {"position": position, "response_id": response_id, "text": text}
            )
        labels: dict[int, list[dict]] = {}
        for label in (
            Label.objects.filter(task_id__in=ids)
            .order_by("task_id", "id")
            .values("id", "task_id", "annotator__username", "payload", "flags", "created_at")
        ):
            labels.setdefault(label["task_id"], []).append({
                "label_id": label["id"], "annotator": label["annotator__username"],
                "payload": label["payload"], "flags": label["flags"],
                "created_at": label["created_at"].isoformat(),
            })  # fmt: skip
        messages = {t["id"]: t["prompt__messages"] for t in chunk}
        for row in _rows(chunk):
            yield {
                "task_id": row["id"], "kind": row["kind"], "status": row["status"],
                "priority": row["priority"], "labels": row["labels"],
                "required_labels": row["required_labels"], "agreement": row["agreement"],
                "gold": row["gold"], "review": row["review"], "created_at": row["created_at"],
                "prompt": messages[row["id"]], "responses": responses.get(row["id"], []),
                "label_payloads": labels.get(row["id"], []),
            }  # fmt: skip


def explorer_export_jsonl(project: Project, filters: ExplorerFilters) -> Iterator[str]:
    for record in _export_records(project, filters):
        yield json.dumps(record, ensure_ascii=False) + "\n"


def explorer_export_csv(project: Project, filters: ExplorerFilters) -> Iterator[str]:
    """One row per task; prompt, responses and labels as JSON text in their cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in _export_records(project, filters):
        writer.writerow([
            json.dumps(record[c], ensure_ascii=False)
            if c in ("prompt", "responses", "label_payloads") else record[c]
            for c in CSV_COLUMNS
        ])  # fmt: skip
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
