"""Quality reads: task facts for the caches, the report, the reviewer queue, final labels."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Exists, F, OuterRef, Subquery, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from annotation.access import review_sealed_filter
from annotation.labels import ids_translated
from annotation.models import Label, Lease, LeaseState, Project, Task, TaskItem, TaskKind
from annotation.opaque import item_ref
from annotation.quality import contributions
from annotation.quality.aggregation import POLICY_GOLD_WEIGHTED, AggregationConfig, aggregate
from annotation.quality.config import QualityConfig
from annotation.quality.models import (
    Adjudication,
    AdjudicationRequest,
    AnnotatorQuality,
    GoldTask,
    QualityDirty,
    QualityRefreshState,
    QualityReport,
    TaskQuality,
)

User = get_user_model()


def quality_config(project: Project) -> QualityConfig:
    return QualityConfig.from_options(project.options)


# --------------------------------------------------------------------------------------------
# Facts of tasks (what the caches are computed from)
# --------------------------------------------------------------------------------------------


def task_facts(task_ids: Iterable[int]) -> dict[int, dict]:
    """The facts (see annotation.quality.contributions) of each task, in five queries.

    Only the payload keys agreement needs are read, not rationales or corrected texts.
    """
    task_ids = list(task_ids)
    tasks = {
        row["id"]: row
        for row in Task.objects.filter(pk__in=task_ids).values("id", "kind", "completed_at")
    }
    items = defaultdict(list)
    for task_id, response_id in (
        TaskItem.objects.filter(task_id__in=tasks)
        .order_by("task_id", "position")
        .values_list("task_id", "response_id")
    ):
        items[task_id].append(response_id)
    gold = {
        g["task_id"]: g
        for g in GoldTask.objects.filter(task_id__in=tasks).values(
            "task_id", "expected", "created_at"
        )
    }
    facts = {
        tid: {
            "kind": row["kind"],
            "items": items[tid],
            "gold": (
                contributions.label_value(row["kind"], gold[tid]["expected"])
                if tid in gold
                else None
            ),
            "done_day": row["completed_at"].date().isoformat() if row["completed_at"] else None,
            "labels": [],
            "skips": [],
        }
        for tid, row in tasks.items()
    }
    labels = (
        Label.objects.filter(task_id__in=tasks)
        .order_by("task_id", "annotator_id")
        .values(
            "task_id",
            "annotator_id",
            "kind",
            "flags",
            "duration_ms",
            "created_at",
            "payload__outcome",
            "payload__strength",
            "payload__chosen_side",
            "payload__ranking",
            "payload__scores",
        )
    )
    for lb in labels:
        kind = lb["kind"]
        payload = {
            "outcome": lb["payload__outcome"],
            "strength": lb["payload__strength"],
            "chosen_side": lb["payload__chosen_side"],
            "ranking": lb["payload__ranking"],
            "scores": lb["payload__scores"],
        }
        fact = {
            "a": lb["annotator_id"],
            "v": contributions.label_value(kind, payload),
            "s": contributions.label_side(kind, payload),
            "d": lb["duration_ms"],
            "f": int(bool(lb["flags"])),
            "day": lb["created_at"].date().isoformat(),
        }
        g = gold.get(lb["task_id"])
        if g is not None and lb["created_at"] < g["created_at"]:
            fact["g"] = 0
        facts[lb["task_id"]]["labels"].append(fact)
    for task_id, annotator_id, closed_at in (
        Lease.objects.filter(task_id__in=tasks, state=LeaseState.SKIPPED)
        .order_by("task_id", "annotator_id")
        .values_list("task_id", "annotator_id", "closed_at")
    ):
        day = closed_at.date().isoformat() if closed_at else None
        facts[task_id]["skips"].append({"a": annotator_id, "day": day})
    return facts


# --------------------------------------------------------------------------------------------
# Report and annotators
# --------------------------------------------------------------------------------------------


def quality_report_computed_at(project: Project):
    """When the stored report was computed; None while the project has none."""
    return (
        QualityReport.objects.filter(project=project).values_list("computed_at", flat=True).first()
    )


def quality_refresh_status(project: Project) -> dict:
    """When the stored report was computed, and whether a refresh is waiting: queued (the
    ``pending`` flag and when it was requested) or owed (tasks changed since, still dirty)."""
    computed_at = quality_report_computed_at(project)
    state = QualityRefreshState.objects.filter(project=project).first()
    pending = bool(state and state.pending)
    requested_at = state.requested_at if state else None
    stale = pending and (
        requested_at is None
        or timezone.now() - requested_at
        > timedelta(seconds=settings.TANDEM_QUALITY_REFRESH_STALE_SECONDS)
    )
    return {
        "computed_at": computed_at,
        "pending": pending,
        "requested_at": requested_at if pending else None,
        # A waiting flag past the bound is taken over by the next request (refresh.py).
        "stale": stale,
        "changed_tasks": QualityDirty.objects.filter(project=project).count(),
    }


def quality_report_json(project: Project) -> str | None:
    """The stored report as JSON text, without decoding it (the dashboard's hot path)."""
    return (
        QualityReport.objects.filter(project=project)
        .annotate(text=Cast("report", TextField()))
        .values_list("text", flat=True)
        .first()
    )


def quality_report(project: Project) -> dict | None:
    row = QualityReport.objects.filter(project=project).values("report", "computed_at").first()
    if row is None:
        return None
    return {**row["report"], "computed_at": row["computed_at"]}


def annotator_gold_accuracy(project: Project) -> tuple[tuple[int, int, int], ...]:
    """Each annotator's gold record, (annotator, correct, answered), for the ``gold_weighted``
    policy (``AggregationConfig.gold_accuracy``): all their gold answers, as counted by the
    last quality refresh; annotators without a gold answer are left out."""
    return tuple(
        AnnotatorQuality.objects.filter(project=project, gold_answered__gt=0)
        .order_by("annotator_id")
        .values_list("annotator_id", "gold_correct", "gold_answered")
    )


def annotators_failing_gold(project: Project) -> set[int]:
    """Annotators whose gold accuracy is below the project's threshold, or who are paused.

    For snapshots that exclude their labels. Accuracy is over all their gold answers (not
    only since a reinstatement), once they have ``gold_min_answers`` of them.
    """
    config = quality_config(project)
    failing = set()
    for row in AnnotatorQuality.objects.filter(project=project).values(
        "annotator_id", "gold_answered", "gold_correct", "paused_at"
    ):
        answered = row["gold_answered"]
        below = (
            answered >= config.gold_min_answers
            and row["gold_correct"] < config.gold_threshold * answered
        )
        if below or row["paused_at"] is not None:
            failing.add(row["annotator_id"])
    return failing


# --------------------------------------------------------------------------------------------
# Reviewer queue and adjudication
# --------------------------------------------------------------------------------------------


def review_queue(project: Project, *, limit: int = 50, offset: int = 0) -> list[dict]:
    """Tasks sent to adjudication by hand (the data explorer), oldest request first, then
    tasks whose labels disagree, lowest agreement first; none adjudicated, none gold."""
    decided = Exists(Adjudication.objects.filter(task_id=OuterRef("task_id")))
    requests = (
        AdjudicationRequest.objects.filter(project=project).alias(decided=decided)
        .filter(decided=False)
    )  # fmt: skip
    requested_total = requests.count()
    rows = [
        {
            "task_id": r["task_id"],
            "kind": r["task__kind"],
            "labels": r["task__label_count"],
            "agreement": None if r["agreement"] is None else round(r["agreement"], 4),
            "requested": True,
        }
        for r in requests.order_by("created_at", "task_id")
        .annotate(
            agreement=Subquery(
                TaskQuality.objects.filter(task_id=OuterRef("task_id")).values("agreement")[:1]
            )
        )
        .values("task_id", "task__kind", "task__label_count", "agreement")[offset : offset + limit]
    ]
    if len(rows) == limit:
        return rows
    disagreeing = (
        TaskQuality.objects.filter(project=project, labels__gte=2, is_gold=False)
        .exclude(agreement__isnull=True)
        .exclude(agreement__gte=1.0)
        .alias(
            decided=decided,
            requested=Exists(AdjudicationRequest.objects.filter(task_id=OuterRef("task_id"))),
        )
        .filter(decided=False, requested=False)
        .order_by("agreement", "task_id")
    )
    start = max(offset - requested_total, 0)
    rows += [
        {
            "task_id": r["task_id"],
            "kind": r["kind"],
            "labels": r["labels"],
            "agreement": round(r["agreement"], 4),
            "requested": False,
        }
        for r in disagreeing.values("task_id", "kind", "labels", "agreement")[
            start : start + limit - len(rows)
        ]
    ]
    return rows


def _reviewer_ids(items: list[TaskItem]) -> dict[int, int]:
    """response id -> the id the review view shows for it: its task item's ref.

    Reviewers annotate too. A review round's answers are written model by model, so raw
    response ids (and their order) could say which side the candidate is on; item refs carry
    neither order nor age (``annotation.opaque``), as in the annotator API."""
    return {item.response_id: item_ref(item.pk) for item in items}


def payload_from_reviewer(task: Task, payload):
    """An adjudication payload naming responses by the review view's ids, in response ids
    (a response id itself is kept, for tools written before refs; refs never equal one)."""
    items = list(task.items.only("pk", "response_id"))
    by_ref = {ref: response_id for response_id, ref in _reviewer_ids(items).items()}
    return ids_translated(task.kind, payload, by_ref, strict=False)


def review_task_view(task: Task) -> dict:
    """Everything a reviewer needs: responses in canonical order, every label and its author.

    Only for a task that is not sealed for the viewer (``access_task_for_review``). Responses
    are named by their task items' refs, in the labels' payloads too (``_reviewer_ids``)."""
    items = list(task.items.select_related("response").order_by("position"))
    ids = _reviewer_ids(items)
    labels = list(task.labels.select_related("annotator").order_by("created_at", "id"))
    adjudication = Adjudication.objects.filter(task=task).select_related("reviewer").first()
    gold = GoldTask.objects.filter(task=task).first()
    outcome_counts: dict = {}
    for label in labels:
        key = label.payload.get("outcome") if task.kind == TaskKind.PAIRWISE else None
        if key:
            outcome_counts[key] = outcome_counts.get(key, 0) + 1
    quality = TaskQuality.objects.filter(task=task).values("agreement").first()
    return {
        "task_id": task.pk,
        "project_id": task.project_id,
        "kind": task.kind,
        "prompt": task.prompt.messages,
        "responses": [
            {
                "position": "ABCDEFGH"[i.position] if i.position < 8 else str(i.position),
                "id": ids[i.response_id],
                "text": i.response.text,
            }
            for i in items
        ],
        "labels": [
            {
                "id": lb.pk,
                "annotator_id": lb.annotator_id,
                "annotator": lb.annotator.username,
                "payload": ids_translated(task.kind, lb.payload, ids, strict=False),
                "flags": lb.flags,
                "duration_ms": lb.duration_ms,
                "version": lb.version,
                "created_at": lb.created_at.isoformat(),
            }
            for lb in labels
        ],
        "outcome_counts": outcome_counts,
        "agreement": quality["agreement"] if quality else None,
        "is_gold": gold is not None,
        "adjudication": (
            {
                "reviewer": adjudication.reviewer.username,
                "payload": ids_translated(task.kind, adjudication.payload, ids, strict=False),
                "reason": adjudication.reason,
                "flags": adjudication.flags,
                "updated_at": adjudication.updated_at.isoformat(),
            }
            if adjudication
            else None
        ),
    }


# --------------------------------------------------------------------------------------------
# Final labels for snapshots
# --------------------------------------------------------------------------------------------


def _vote_key(kind: str, payload: dict):
    """What labels vote on: the pairwise outcome, or the whole ranking / score set."""
    if kind == TaskKind.PAIRWISE:
        return payload.get("outcome")
    value = contributions.label_value(kind, payload)
    if kind == TaskKind.RANKING and value:
        return tuple(tuple(tier) for tier in value)
    if kind == TaskKind.RUBRIC and value:
        return tuple(sorted((r, tuple(sorted(d.items()))) for r, d in value.items()))
    return None


def final_labels(
    project: Project,
    *,
    config: AggregationConfig,
    kind: str = TaskKind.PAIRWISE,
    exclude_annotators: Iterable[int] = (),
) -> list[dict]:
    """One decision per task of ``kind`` under ``config``, with provenance and label weights.

    Gold tasks are left out (they are checks, not data); an adjudication overrides the policy.
    Dawid-Skene applies to pairwise outcomes; for rankings and rubric scores the policies vote
    on the whole ranking or score set. Every task at once: the API reads it page by page
    (``final_labels_page``).
    """
    return final_labels_page(
        project, config=config, kind=kind, exclude_annotators=exclude_annotators
    )["tasks"]


def final_labels_page(
    project: Project,
    *,
    config: AggregationConfig,
    kind: str = TaskKind.PAIRWISE,
    exclude_annotators: Iterable[int] = (),
    after: int = 0,
    limit: int | None = None,
    sealed_for=None,
) -> dict:
    """``final_labels`` for at most ``limit`` labelled tasks with ids above ``after`` (keyset
    pagination, so a page costs the same wherever it starts): ``{"tasks": [...],
    "next_after": the cursor of the next page, or None}``.

    Majority, unanimity and agreement thresholds decide a task from its own labels, so a
    page reads only its tasks' labels. Dawid-Skene weighs annotators by all their labels: it
    is fitted on every label of the kind (one pass, streamed) and the page decided with it.

    ``sealed_for``: the user who reads them; tasks sealed for that user (open, leased, or with
    their own label still editable: ``review_sealed_filter``) are left out, labels and all.
    """
    excluded = set(exclude_annotators)
    if kind != TaskKind.PAIRWISE and config.policy == "dawid_skene":
        raise ValueError("Dawid-Skene weighting applies to pairwise outcomes")
    labelled = (
        Label.objects.filter(task__project=project, kind=kind)
        .alias(gold=Exists(GoldTask.objects.filter(task_id=OuterRef("task_id"))))
        .filter(gold=False)
    )
    if sealed_for is not None:
        sealed = Task.objects.filter(pk=OuterRef("task_id")).filter(
            review_sealed_filter(sealed_for, project=project)
        )
        labelled = labelled.alias(sealed=Exists(sealed)).filter(sealed=False)
    page_tasks = None
    if limit is not None:
        page_tasks = list(
            labelled.filter(task_id__gt=after)
            .order_by("task_id")
            .values_list("task_id", flat=True)
            .distinct()[: limit + 1]
        )
    read = labelled
    if page_tasks is not None and config.policy != "dawid_skene":
        read = labelled.filter(task_id__in=page_tasks[:limit])
    labels: dict[int, dict[int, object]] = defaultdict(dict)
    ids: dict[int, dict[int, int]] = defaultdict(dict)
    rows = read.values_list("id", "task_id", "annotator_id", "payload").order_by(
        "task_id", "annotator_id"
    )
    for label_id, task_id, annotator_id, payload in rows.iterator(chunk_size=5000):
        if annotator_id in excluded:
            continue
        key = _vote_key(kind, payload)
        if key is not None:
            labels[task_id][annotator_id] = key
            ids[task_id][annotator_id] = label_id
    adjudications = Adjudication.objects.filter(project=project, task__kind=kind)
    if page_tasks is not None:
        adjudications = adjudications.filter(task_id__in=page_tasks[:limit])
    adjudicated = {
        task_id: _vote_key(kind, payload)
        for task_id, payload in adjudications.values_list("task_id", "payload")
    }
    classes = contributions.OUTCOMES if kind == TaskKind.PAIRWISE else None
    if config.policy == POLICY_GOLD_WEIGHTED and not config.gold_accuracy:
        config = dataclasses.replace(config, gold_accuracy=annotator_gold_accuracy(project))
    decisions = aggregate(labels, config, classes=classes, adjudicated=adjudicated)
    wanted = sorted(decisions) if page_tasks is None else page_tasks[:limit]
    out = []
    for task_id in wanted:
        d = decisions.get(task_id)
        if d is None:
            continue  # no label of this task votes (an excluded annotator's, say)
        out.append(
            {
                "task_id": task_id,
                "value": d.value if kind == TaskKind.PAIRWISE else _unkey(kind, d.value),
                "provenance": d.provenance,
                "support": round(d.support, 6),
                "labels": [
                    {"label_id": ids[task_id].get(a), "annotator_id": a, "weight": round(w, 6)}
                    for a, w in sorted(d.weights.items())
                ],
            }
        )
    more = page_tasks is not None and len(page_tasks) > limit
    return {"tasks": out, "next_after": page_tasks[limit - 1] if more else None}


def _unkey(kind: str, value):
    if value is None:
        return None
    if kind == TaskKind.RANKING:
        return [list(tier) for tier in value]
    if kind == TaskKind.RUBRIC:
        return {r: dict(dims) for r, dims in value}
    return value


def gold_tasks(project: Project) -> list[dict]:
    return list(
        GoldTask.objects.filter(project=project)
        .order_by("task_id")
        .values("task_id", "expected", "source", "created_at", kind=F("task__kind"))
    )


def annotator_flag_scores(project: Project) -> list[dict]:
    """Precision, recall and F1 of each annotator's flags against the reviewers' flags.

    The truth is an adjudication that judged flags (``Adjudication.flags`` not null): on each
    such task, for each flag, an annotator's label either carries it or not, and the reviewer
    found it or not (true/false positive, false negative). A score whose denominator is 0 is
    None (no flag given, or none to find). Bounded by the adjudicated tasks, so read per page.
    """
    truth = dict(
        Adjudication.objects.filter(project=project, flags__isnull=False).values_list(
            "task_id", "flags"
        )
    )
    counts: dict[int, dict[str, int]] = {}
    names = dict(
        get_user_model()
        .objects.filter(labels__task_id__in=list(truth))
        .values_list("id", "username")
    )
    rows = Label.objects.filter(task_id__in=list(truth)).values_list(
        "task_id", "annotator_id", "flags"
    )
    for task_id, annotator_id, flags in rows.iterator(chunk_size=5000):
        given, found = set(flags or ()), set(truth[task_id] or ())
        c = counts.setdefault(annotator_id, {"tasks": 0, "tp": 0, "fp": 0, "fn": 0})
        c["tasks"] += 1
        c["tp"] += len(given & found)
        c["fp"] += len(given - found)
        c["fn"] += len(found - given)
    out = []
    for annotator_id, c in sorted(counts.items()):
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall
            else None
        )
        out.append(
            {
                "annotator_id": annotator_id,
                "annotator": names.get(annotator_id, str(annotator_id)),
                **c,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return out
