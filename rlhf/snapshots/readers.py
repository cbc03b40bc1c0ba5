"""Labels out of the database as ``rlhf.data`` records, streamed.

On PostgreSQL (CI, production):

One query joins each frozen label to its task, prompt and the task's responses (in position
order) and reads it through a server-side cursor on a connection of its own, so the job's
Django connection stays free to report progress while millions of rows stream past. JSON
columns come as text and are parsed in the pipeline's worker processes. A label edited since
the snapshot froze it is read at its frozen version from its revision history.

On any other database (the embedded SQLite default of a first run) the same records come
from the ORM, in this process, task by task: slower, but the snapshot is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from django.db import connection

from annotation.models import Label, LabelRevision, TaskItem, TaskKind
from annotation.quality.models import Adjudication
from rlhf.data.records import LabelRecord


def parallel_reads_supported() -> bool:
    """Worker processes read their own shards straight from PostgreSQL; elsewhere, in-process."""
    return connection.vendor == "postgresql"


_READ_SQL = """
WITH frozen AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS f(id, version)
)
SELECT l.id, l.task_id, l.kind, l.annotator_id,
       CASE WHEN l.version = frozen.version THEN l.payload ELSE rev.payload END::text,
       CASE WHEN l.version = frozen.version THEN l.flags ELSE rev.flags END::text,
       t.prompt_id, p.messages::text, p.source, items.ids, items.texts, sp.messages::text
FROM frozen
JOIN annotation_label l ON l.id = frozen.id
JOIN annotation_task t ON t.id = l.task_id
JOIN annotation_prompt p ON p.id = t.prompt_id
LEFT JOIN annotation_prompt sp ON sp.id = p.source_prompt_id
LEFT JOIN annotation_labelrevision rev
       ON rev.label_id = l.id AND rev.version = frozen.version AND l.version <> frozen.version
CROSS JOIN LATERAL (
    SELECT array_agg(ti.response_id ORDER BY ti.position) AS ids,
           array_agg(r.text ORDER BY ti.position) AS texts
    FROM annotation_taskitem ti JOIN annotation_response r ON r.id = ti.response_id
    WHERE ti.task_id = t.id
) items
ORDER BY l.task_id, l.id
"""


def connection_params() -> dict:
    """The default database's connection keywords, picklable (for worker processes)."""
    return {
        k: v
        for k, v in connection.get_connection_params().items()
        if isinstance(v, (str, int, float, bool)) or v is None
    }


def freeze_adjudications(*, project_id: int) -> dict[str, dict]:
    """The project's adjudications of pairwise, ranking, rubric and correction tasks as they
    stand now, ``{str(task id): canonical payload, with the adjudicator's "flags" when
    any}``: a snapshot records them when it freezes its labels, since an adjudication can be
    edited later."""
    return {
        # The adjudicator's flags ride along with the decision (``rlhf.data.flags``).
        str(task_id): {**payload, "flags": flags} if flags else payload
        for task_id, payload, flags in Adjudication.objects.filter(
            project_id=project_id,
            task__kind__in=(
                TaskKind.PAIRWISE,
                TaskKind.RANKING,
                TaskKind.RUBRIC,
                TaskKind.CORRECTION,
            ),
        )
        .order_by("task_id")
        .values_list("task_id", "payload", "flags")
    }


def iter_label_records(
    ids: np.ndarray,
    versions: np.ndarray,
    *,
    batch: int = 5000,
    params: dict | None = None,
    adjudications: dict[str, dict] | None = None,
) -> Iterator[LabelRecord]:
    """Records for the given labels at the given versions, grouped by task; a task in
    ``adjudications`` (frozen by ``freeze_adjudications``) carries its adjudication."""
    adjudications = adjudications or {}
    params = params or connection_params()
    with (
        psycopg.connect(**params) as conn,
        conn.transaction(),
        conn.cursor(name="tandem_snapshot_read", binary=True) as cur,
    ):
        cur.itersize = batch
        # JIT compiling this query costs seconds of CPU and saves none on an index-driven plan.
        conn.execute("SET LOCAL jit = off")
        cur.execute(_READ_SQL, {"ids": ids.tolist(), "versions": versions.tolist()})
        for (
            label_id,
            task_id,
            kind,
            annotator_id,
            payload,
            flags,
            prompt_id,
            messages,
            source,
            response_ids,
            texts,
            source_prompt,
        ) in cur:
            yield LabelRecord(
                label_id=label_id,
                task_id=task_id,
                kind=kind,
                annotator_id=annotator_id,
                payload=payload,
                prompt_id=prompt_id,
                prompt=messages,
                # A confirm task on a prompt variant shows no response (NULL arrays).
                responses=dict(zip(response_ids or (), texts or (), strict=True)),
                source=source,
                flags=flags,
                adjudication=adjudications.get(str(task_id)),
                source_prompt=source_prompt,
            )


_FREEZE_SQL = """
SELECT l.id, l.version, l.kind FROM annotation_label l
JOIN annotation_task t ON t.id = l.task_id
JOIN annotation_prompt p ON p.id = t.prompt_id
WHERE t.project_id = %(project)s AND l.id <= %(max_id)s
  AND (cardinality(%(kinds)s::text[]) = 0 OR l.kind = ANY(%(kinds)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM annotation_goldtask g WHERE g.task_id = t.id)
  AND NOT (t.prompt_id = ANY(%(excluded_prompts)s::bigint[]))
  AND NOT (COALESCE(p.source_prompt_id, 0) = ANY(%(excluded_prompts)s::bigint[]))
  AND p.sealed_at IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM annotation_taskitem ti JOIN annotation_response r ON r.id = ti.response_id
      WHERE ti.task_id = t.id AND r.sealed_at IS NOT NULL)
ORDER BY l.id
"""


def freeze_label_ids(
    *,
    project_id: int,
    max_label_id: int,
    kinds: list[str],
    exclude_prompt_ids: list[int] = (),
    batch: int = 100_000,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(ids, versions, labels per kind) of the project's labels up to ``max_label_id``.

    Gold items are quality checks answered by every annotator, not training data: left out.
    So are labels of tasks showing a sealed text (``annotation.services.sealing``), and on
    ``exclude_prompt_ids`` (the pinned evaluation prompts: a model trained on
    them would be reviewed on its own training data), and on confirmed variants of them.
    """
    excluded = [int(i) for i in exclude_prompt_ids]
    if not parallel_reads_supported():
        return _freeze_label_ids_orm(
            project_id=project_id, max_label_id=max_label_id, kinds=kinds, excluded=excluded
        )
    id_chunks, version_chunks, counts = [], [], {}
    params = connection_params()
    with (
        psycopg.connect(**params) as conn,
        conn.transaction(),
        conn.cursor(name="tandem_snapshot_freeze") as cur,
    ):
        cur.itersize = batch
        cur.execute(
            _FREEZE_SQL,
            {
                "project": project_id,
                "max_id": max_label_id,
                "kinds": kinds,
                "excluded_prompts": excluded,
            },
        )
        while rows := cur.fetchmany(batch):
            ids, versions, row_kinds = zip(*rows, strict=True)
            id_chunks.append(np.fromiter(ids, np.int64, len(ids)))
            version_chunks.append(np.fromiter(versions, np.int64, len(versions)))
            for kind in set(row_kinds):
                counts[kind] = counts.get(kind, 0) + row_kinds.count(kind)
    if not id_chunks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {}
    return np.concatenate(id_chunks), np.concatenate(version_chunks), dict(sorted(counts.items()))


@dataclass(frozen=True)
class LabelShard:
    """A picklable record source for one range of tasks: a worker process calls it and reads
    its labels straight from PostgreSQL (``rlhf.data.build_dataset(shards=...)``)."""

    params: dict
    ids: np.ndarray
    versions: np.ndarray
    adjudications: dict | None = None

    def __call__(self) -> Iterator[LabelRecord]:
        return iter_label_records(
            self.ids, self.versions, params=self.params, adjudications=self.adjudications
        )


_TASK_ORDER_SQL = """
SELECT l.task_id, f.id, f.version
FROM unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS f(id, version)
JOIN annotation_label l ON l.id = f.id
ORDER BY l.task_id, f.id
"""


def label_shards(
    ids: np.ndarray,
    versions: np.ndarray,
    *,
    workers: int = 2,
    labels_per_shard: int | None = None,
    adjudications: dict[str, dict] | None = None,
):
    """Cut frozen labels into shards of whole tasks, in task order: small enough that every
    worker gets several (so none idles at the end), at most 20,000 labels each. Each shard
    carries the frozen adjudications of its own tasks."""
    if labels_per_shard is None:
        labels_per_shard = int(np.clip(len(ids) // (4 * max(workers, 1)), 2_000, 20_000))
    if not parallel_reads_supported():
        return [OrmLabelShard(ids, versions, adjudications)] if len(ids) else []
    params = connection_params()
    columns: list[list[np.ndarray]] = [[], [], []]
    with (
        psycopg.connect(**params) as conn,
        conn.transaction(),
        conn.cursor(name="tandem_snapshot_shards") as cur,
    ):
        conn.execute("SET LOCAL jit = off")
        cur.execute(_TASK_ORDER_SQL, {"ids": ids.tolist(), "versions": versions.tolist()})
        while rows := cur.fetchmany(100_000):
            for column, values in zip(columns, zip(*rows, strict=True), strict=True):
                column.append(np.fromiter(values, np.int64, len(values)))
    if not columns[0]:
        return []
    task_ids, label_ids, label_versions = (np.concatenate(c) for c in columns)
    shards, start = [], 0
    while start < len(task_ids):
        end = min(start + labels_per_shard, len(task_ids))
        # Extend to the end of the last task so no task is split across shards.
        while end < len(task_ids) and task_ids[end] == task_ids[end - 1]:
            end += 1
        tasks = {str(t) for t in np.unique(task_ids[start:end]).tolist()}
        own = {t: p for t, p in (adjudications or {}).items() if t in tasks}
        shards.append(LabelShard(params, label_ids[start:end], label_versions[start:end], own))
        start = end
    return shards


def _without_sealed_texts(labels):
    """Labels of tasks that show no sealed text (the same rule as ``_FREEZE_SQL``)."""
    return labels.exclude(task__prompt__sealed_at__isnull=False).exclude(
        task__items__response__sealed_at__isnull=False
    )


def sealed_labels_count(*, project_id: int, max_label_id: int, kinds: list[str]) -> int:
    """How many labels up to the cut-off a new snapshot leaves out because their task shows a
    sealed text (a project admin's decision, whatever the flag policy): the data card says so."""
    labels = Label.objects.filter(task__project_id=project_id, id__lte=max_label_id)
    if kinds:
        labels = labels.filter(kind__in=kinds)
    return labels.count() - _without_sealed_texts(labels).count()


def _freeze_label_ids_orm(
    *, project_id: int, max_label_id: int, kinds: list[str], excluded: list[int] = ()
):
    labels = Label.objects.filter(
        task__project_id=project_id, id__lte=max_label_id, task__gold__isnull=True
    ).exclude(task__prompt_id__in=list(excluded))
    labels = labels.exclude(task__prompt__source_prompt_id__in=list(excluded))
    labels = _without_sealed_texts(labels)
    if kinds:
        labels = labels.filter(kind__in=kinds)
    rows = list(labels.order_by("id").values_list("id", "version", "kind"))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {}
    ids, versions, row_kinds = zip(*rows, strict=True)
    counts: dict[str, int] = {}
    for kind in row_kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return (
        np.asarray(ids, np.int64),
        np.asarray(versions, np.int64),
        dict(sorted(counts.items())),
    )


@dataclass(frozen=True)
class OrmLabelShard:
    """Every frozen label, read through the ORM in this process (databases without the
    PostgreSQL fast path); the pipeline runs with ``workers=0`` then."""

    ids: np.ndarray
    versions: np.ndarray
    adjudications: dict | None = None

    def __call__(self) -> Iterator[LabelRecord]:
        return iter_label_records_orm(self.ids, self.versions, adjudications=self.adjudications)


def iter_label_records_orm(
    ids: np.ndarray,
    versions: np.ndarray,
    *,
    batch: int = 2000,
    adjudications: dict[str, dict] | None = None,
) -> Iterator[LabelRecord]:
    """The ORM twin of ``iter_label_records``: same records, same (task, label) order."""
    adjudications = adjudications or {}
    frozen = dict(zip(ids.tolist(), versions.tolist(), strict=True))
    order: list[tuple[int, int]] = []
    id_list = list(frozen)
    for start in range(0, len(id_list), batch):
        chunk = id_list[start : start + batch]
        order.extend(Label.objects.filter(id__in=chunk).values_list("task_id", "id"))
    order.sort()
    for start in range(0, len(order), batch):
        end = min(start + batch, len(order))
        while end < len(order) and order[end][0] == order[end - 1][0]:
            end += 1  # whole tasks only
        label_ids = [label_id for _, label_id in order[start:end]]
        labels = {
            label.pk: label
            for label in Label.objects.filter(id__in=label_ids).select_related(
                "task__prompt__source_prompt"
            )
        }
        stale = [(i, frozen[i]) for i in label_ids if labels[i].version != frozen[i]]
        old_payloads, old_flags = {}, {}
        for label_id, version in stale:
            old_payloads[label_id], old_flags[label_id] = (
                LabelRevision.objects.filter(label_id=label_id, version=version)
                .values_list("payload", "flags")
                .first()
            ) or (None, [])
        task_ids = {labels[i].task_id for i in label_ids}
        items: dict[int, dict[int, str]] = {}
        for task_id, response_id, text in (
            TaskItem.objects.filter(task_id__in=task_ids)
            .order_by("task_id", "position")
            .values_list("task_id", "response_id", "response__text")
        ):
            items.setdefault(task_id, {})[response_id] = text
        for label_id in label_ids:
            label = labels[label_id]
            task = label.task
            yield LabelRecord(
                label_id=label.pk,
                task_id=task.pk,
                kind=label.kind,
                annotator_id=label.annotator_id,
                payload=old_payloads.get(label_id, label.payload),
                prompt_id=task.prompt_id,
                prompt=task.prompt.messages,
                responses=items.get(task.pk, {}),
                source=task.prompt.source,
                flags=tuple(old_flags.get(label_id, label.flags) or ()),
                adjudication=adjudications.get(str(task.pk)),
                source_prompt=(
                    task.prompt.source_prompt.messages if task.prompt.source_prompt_id else None
                ),
            )
