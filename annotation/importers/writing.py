"""Writing validated rows: prompts, responses, tasks and their items, then imported labels.

Every step first looks up what the project already holds by content hash, creates only what
is missing, then reads the new ids back (in chunks, so a large file never builds one huge
statement): importing the same file twice creates nothing the second time.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from annotation.importers.rows import PEER_KINDS, _Row
from annotation.labels import canonical_ranking
from annotation.models import (
    ImportBatch,
    Label,
    LabelSource,
    Project,
    Prompt,
    Response,
    ResponseOrigin,
    Task,
    TaskItem,
    TaskKind,
    TaskStatus,
)
from annotation.services import (
    content_hash_candidates,
    prompt_messages_hash,
    task_content_hash,
    text_hash,
    user_external_get_or_create,
)

_CHUNK = 2000

# (prompt id, origin, model name, text hash): what makes a response the same response.
ResponseKey = tuple[int, str, str, str]


class _PlannedTask(NamedTuple):
    row: _Row
    kind: str
    response_ids: list[int]  # in the task's canonical order (A, B, ...)
    winner: int | None  # preferences: the chosen response's id
    prompt_id: int


def _chunks(items: list, size: int = _CHUNK):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _pairwise_order(prompt_hash: str, hashes: list[str]) -> list[int]:
    """Canonical A/B order for an imported pair, balanced by hash (chosen is not always A)."""
    flip = hashlib.sha256((prompt_hash + "".join(hashes)).encode()).digest()[0] & 1
    return [1, 0] if flip else [0, 1]


def _ids_by_content_hash(rows: QuerySet, hashes: list[str]) -> dict[str, int]:
    """``{content hash: id}`` of the rows among ``rows`` that have one of ``hashes``, as it is
    or sealed (its keyed hash, ``content_hash_candidates``): a sealed text found again stays
    sealed, never written a second time in clear."""
    found: dict[str, int] = {}
    for chunk in _chunks(hashes):
        stored_as = {c: h for h in chunk for c in content_hash_candidates(h)}
        for stored, pk in rows.filter(content_hash__in=list(stored_as)).values_list(
            "content_hash", "id"
        ):
            found[stored_as[stored]] = pk
    return found


def _origin_of(response: dict) -> str:
    """Origin import or model, by whether a model name was given."""
    return ResponseOrigin.MODEL if response["model_name"] else ResponseOrigin.IMPORT


def _response_key(prompt_id: int, response: dict) -> ResponseKey:
    return (prompt_id, _origin_of(response), response["model_name"], text_hash(response["text"]))


def _response_ids(prompt_ids: list[int], wanted=()) -> dict[ResponseKey, int]:
    """The responses of ``prompt_ids`` by key; a sealed one (keyed hash) also under the key of
    any ``wanted`` response it is, so a re-import of a sealed text finds it."""
    found: dict[ResponseKey, int] = {}
    for chunk in _chunks(prompt_ids):
        for rid, pid, origin, model, h in Response.objects.filter(prompt_id__in=chunk).values_list(
            "id", "prompt_id", "origin", "model_name", "content_hash"
        ):
            found[(pid, origin, model, h)] = rid
    for key in wanted:
        if key not in found:
            for stored in content_hash_candidates(key[3])[1:]:
                if (*key[:3], stored) in found:
                    found[key] = found[(*key[:3], stored)]
                    break
    return found


def _write_prompts(project: Project, rows: list[_Row], counts: dict) -> dict[str, int]:
    """Prompts, deduplicated by content hash within the file and against the project."""
    prompt_hashes = {}
    for row in rows:
        prompt_hashes.setdefault(prompt_messages_hash(row.messages), row)
    in_project = Prompt.objects.filter(project=project)
    prompt_ids = _ids_by_content_hash(in_project, list(prompt_hashes))
    new_prompts = [
        Prompt(project=project, messages=row.messages, content_hash=h, source=row.source,
               metadata=row.metadata)
        for h, row in prompt_hashes.items() if h not in prompt_ids
    ]  # fmt: skip
    Prompt.objects.bulk_create(new_prompts, batch_size=_CHUNK)
    counts["prompts_created"] = len(new_prompts)
    prompt_ids.update(_ids_by_content_hash(in_project, [p.content_hash for p in new_prompts]))
    return prompt_ids


def _write_responses(
    rows: list[_Row], prompt_ids: dict[str, int], counts: dict
) -> dict[ResponseKey, int]:
    response_keys = {}
    for row in rows:
        pid = prompt_ids[prompt_messages_hash(row.messages)]
        for r in row.responses:
            response_keys.setdefault(_response_key(pid, r), r["text"])
    by_prompt: dict[int, list] = {}
    for key in response_keys:
        by_prompt.setdefault(key[0], []).append(key)
    prompt_list = list(by_prompt)
    response_ids = _response_ids(prompt_list, response_keys)
    new_responses = [
        Response(prompt_id=k[0], origin=k[1], model_name=k[2], content_hash=k[3], text=text)
        for k, text in response_keys.items()
        if k not in response_ids
    ]
    Response.objects.bulk_create(new_responses, batch_size=_CHUNK)
    counts["responses_created"] = len(new_responses)
    response_ids.update(_response_ids(prompt_list, response_keys))
    return response_ids


def _plan_tasks(
    rows: list[_Row], prompt_ids: dict[str, int], response_ids: dict[ResponseKey, int]
) -> dict[str, _PlannedTask]:
    """The tasks the rows ask for, by task content hash (the first row asking wins)."""
    planned: dict[str, _PlannedTask] = {}
    for row in rows:
        ph = prompt_messages_hash(row.messages)
        pid = prompt_ids[ph]
        keys = [_response_key(pid, r) for r in row.responses]
        for task_kind in row.kinds:
            groups = [keys] if task_kind != TaskKind.CORRECTION else [[k] for k in keys]
            for group in groups:
                order, winner = list(range(len(group))), None
                if row.chosen_index is not None:
                    order = _pairwise_order(ph, [k[3] for k in group])
                    winner = response_ids[group[row.chosen_index]]
                ordered = [group[i] for i in order]
                th = task_content_hash(task_kind, ph, [k[3] for k in ordered])
                ids = [response_ids[k] for k in ordered]
                planned.setdefault(th, _PlannedTask(row, task_kind, ids, winner, pid))
    return planned


def _without_sealed(planned: dict[str, _PlannedTask], counts: dict) -> dict[str, _PlannedTask]:
    """The planned tasks that show no sealed text: a sealed prompt or response found again is
    never offered for labelling (nor labelled by the file) again."""
    prompt_ids = list({p.prompt_id for p in planned.values()})
    sealed_prompts, sealed_responses = set(), set()
    for chunk in _chunks(prompt_ids):
        sealed_prompts.update(
            Prompt.objects.filter(pk__in=chunk, sealed_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
        sealed_responses.update(
            Response.objects.filter(prompt_id__in=chunk, sealed_at__isnull=False).values_list(
                "pk", flat=True
            )
        )
    kept = {
        th: p
        for th, p in planned.items()
        if p.prompt_id not in sealed_prompts and not sealed_responses.intersection(p.response_ids)
    }
    counts["tasks_skipped_sealed"] = len(planned) - len(kept)
    return kept


def _write_tasks(
    project: Project, planned: dict[str, _PlannedTask], filename: str, counts: dict
) -> dict[str, int]:
    """The planned tasks the project lacks, with their items; every planned task's id."""
    in_project = Task.objects.filter(project=project)
    task_ids = _ids_by_content_hash(in_project, list(planned))
    new_tasks = [
        Task(project=project, prompt_id=pid, kind=task_kind,
             required_labels=max(project.overlap, len(row.judgements)),
             content_hash=th, source=row.source or f"import:{filename[:150]}",
             metadata=row.metadata)
        for th, (row, task_kind, _ids, _winner, pid) in planned.items() if th not in task_ids
    ]  # fmt: skip
    Task.objects.bulk_create(new_tasks, batch_size=_CHUNK)
    counts["tasks_created"] = len(new_tasks)
    new_hashes = {t.content_hash for t in new_tasks}
    task_ids.update(_ids_by_content_hash(in_project, list(new_hashes)))
    TaskItem.objects.bulk_create(
        [
            TaskItem(task_id=task_ids[th], response_id=rid, position=i)
            for th in new_hashes
            for i, rid in enumerate(planned[th].response_ids)
        ],
        batch_size=_CHUNK,
    )
    return task_ids


def _pairwise_payload(winner: int | None) -> dict:
    return {"outcome": "tie" if winner is None else "", "strength": None, "winner": winner,
            "chosen_side": None, "rationale": ""}  # fmt: skip


def _judged_payload(plan: _PlannedTask, tiers: list[list[int]]) -> dict:
    """A peer's judgement (tiers of indices into the task's responses) as a stored payload."""
    ids = plan.response_ids
    if plan.kind == TaskKind.RANKING:
        return canonical_ranking({"ranking": [[ids[i] for i in t] for t in tiers]}, item_ids=ids)
    payload = _pairwise_payload(None if len(tiers) == 1 else ids[tiers[0][0]])
    payload["outcome"] = "tie" if len(tiers) == 1 else ("A" if tiers[0][0] == 0 else "B")
    return payload


def _wanted_labels(
    planned: dict[str, _PlannedTask], task_ids: dict[str, int], kind: str, annotator_name
) -> list[tuple[int, object, dict]]:
    """(task id, annotator, payload) of every label the file carries."""
    wanted, annotators = [], {}

    def annotator(name: str):
        if name not in annotators:
            annotators[name] = user_external_get_or_create(name=name)
        return annotators[name]

    for th, plan in planned.items():
        if kind == "preferences":
            payload = _pairwise_payload(plan.winner)
            payload["outcome"] = "A" if plan.response_ids[0] == plan.winner else "B"
            wanted.append((task_ids[th], annotator(annotator_name), payload))
            continue
        for person, tiers in plan.row.judgements:
            name = f"{kind.replace('_', '-')}-{person}"
            wanted.append((task_ids[th], annotator(name), _judged_payload(plan, tiers)))
    return wanted


def _write_labels(wanted, counts: dict, *, make_room: bool) -> None:
    """Each wanted label whose task has no label by that annotator yet, and room for it; with
    ``make_room`` (a peer tool's judgements, each a person's) a full task grows to hold it."""
    tids = list({tid for tid, _a, _p in wanted})
    tasks = {
        t.pk: t
        for chunk in _chunks(tids)
        for t in Task.objects.select_for_update().filter(pk__in=chunk)
    }
    labelled = {
        pair
        for chunk in _chunks(tids)
        for pair in Label.objects.filter(task_id__in=chunk).values_list("task_id", "annotator_id")
    }
    new_labels, added = [], {}
    for tid, annotator, payload in wanted:
        task = tasks[tid]
        if (tid, annotator.pk) in labelled:
            counts["labels_existing"] += 1
            continue
        if not make_room and task.label_count + added.get(tid, 0) >= task.required_labels:
            counts["labels_skipped_task_full"] += 1
            continue
        labelled.add((tid, annotator.pk))
        kind = TaskKind.RANKING if "ranking" in payload else TaskKind.PAIRWISE
        new_labels.append(
            Label(task_id=tid, annotator=annotator, kind=kind, payload=payload,
                  source=LabelSource.IMPORT)
        )  # fmt: skip
        added[tid] = added.get(tid, 0) + 1
    Label.objects.bulk_create(new_labels, batch_size=_CHUNK)
    counts["labels_created"] = len(new_labels)
    by_count: dict[int, list[int]] = {}
    for tid, n in added.items():
        by_count.setdefault(n, []).append(tid)
    for n, group in by_count.items():
        grown = {"required_labels": Greatest("required_labels", F("label_count") + n)}
        for chunk in _chunks(group):
            Task.objects.filter(pk__in=chunk).update(
                label_count=F("label_count") + n, **(grown if make_room else {})
            )
    for chunk in _chunks(list(added)):
        Task.objects.filter(pk__in=chunk, label_count__gte=F("required_labels")).update(
            status=TaskStatus.DONE, completed_at=timezone.now()
        )


@transaction.atomic
def import_rows(
    *,
    project: Project,
    rows: list[_Row],
    kind: str,
    created_by,
    filename: str,
    sha256: str,
    fmt: str,
    annotator_name: str | None = None,
) -> ImportBatch:
    """Write rows that ``parse_import`` validated, all in one transaction."""
    counts = {
        "rows": len(rows),
        "prompts_created": 0,
        "responses_created": 0,
        "tasks_created": 0,
        "labels_created": 0,
        "labels_existing": 0,
        "labels_skipped_task_full": 0,
    }
    prompt_ids = _write_prompts(project, rows, counts)
    if kind != "prompts":
        response_ids = _write_responses(rows, prompt_ids, counts)
        planned = _without_sealed(_plan_tasks(rows, prompt_ids, response_ids), counts)
        task_ids = _write_tasks(project, planned, filename, counts)
        if kind == "preferences" or kind in PEER_KINDS:
            wanted = _wanted_labels(planned, task_ids, kind, annotator_name or filename)
            _write_labels(wanted, counts, make_room=kind in PEER_KINDS)
    return ImportBatch.objects.create(
        project=project, created_by=created_by, filename=filename[:255], format=fmt,
        sha256=sha256, rows=len(rows), counts=counts,
    )  # fmt: skip
