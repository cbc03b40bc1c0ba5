"""Reads of dataset snapshots, always scoped through the project access gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from django.http import Http404

from annotation.access import access_project
from annotation.models import Label
from annotation.roles import Capability
from annotation.services import project_aggregation_config, project_flag_policy
from rlhf.data.idcodec import decode_ids
from rlhf.models import DatasetSnapshot, SnapshotStatus, TrainingRun


def snapshot_list(*, user, project_id) -> list[DatasetSnapshot]:
    project = access_project(user, project_id, capability=Capability.DATA)
    return list(
        DatasetSnapshot.objects.filter(project=project).defer(
            "label_ids", "label_versions", "report", "data_card"
        )
    )


def snapshot_get(*, user, snapshot_id) -> DatasetSnapshot:
    """The snapshot, if the user may read its project's data; a foreign id is a 404."""
    try:
        snapshot = DatasetSnapshot.objects.get(pk=int(snapshot_id))
    except (DatasetSnapshot.DoesNotExist, TypeError, ValueError):
        raise Http404("No such snapshot.") from None
    try:
        access_project(user, snapshot.project_id, capability=Capability.DATA)
    except Http404:
        raise Http404("No such snapshot.") from None
    return snapshot


def snapshot_exports(*, snapshot: DatasetSnapshot) -> list[dict]:
    """The snapshot's exports on disk (the canonical one first) with their manifests."""
    if not snapshot.export_path:
        return []
    root = Path(snapshot.export_path)
    out = []
    candidates = [root, *sorted((root.parent / "exports").glob("*"))]
    for path in candidates:
        manifest = path / "manifest.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            out.append(
                {
                    "path": str(path),
                    "name": "canonical" if path == root else path.name,
                    "shapes": data["shapes"],
                    "rows_sha256_all": data["rows_sha256_all"],
                    "truncation": data.get("truncation"),
                    "peer_exports": data.get("peer_exports"),
                }
            )
    return out


def snapshot_split_prompts(
    *, snapshot: DatasetSnapshot, split: str = "test", shape: str = "preference"
) -> list[list[dict]]:
    """The distinct conversations (prompts) of one split of the snapshot's canonical export,
    in file order. A split the export does not hold gives none."""
    if not snapshot.export_path:
        return []
    path = Path(snapshot.export_path) / shape / f"{split}.jsonl"
    if not path.is_file():
        return []
    seen: set[str] = set()
    prompts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            prompt = json.loads(line)["prompt"]
            key = json.dumps(prompt, sort_keys=True)
            if key not in seen:
                seen.add(key)
                prompts.append(prompt)
    return prompts


def snapshot_flag_policy(*, project) -> dict:
    """The flag policy a new snapshot of ``project`` is built with, unless its request names
    one: the project's ``flags`` setting (``annotation.services.project_flag_policy``, edited
    on the manage page and the settings API) over ``FlagPolicy``'s documented defaults."""
    return project_flag_policy(project).as_dict()


def snapshot_aggregation_default(*, project) -> dict:
    """The aggregation a new snapshot of ``project`` is built with, for the fields its request
    leaves out: the project's ``aggregation`` setting (policy, min_agreement, min_labels; the
    manage page and the settings API), else ``AggregationConfig``'s defaults (majority)."""
    config = project_aggregation_config(project)
    return {"policy": config.policy, "min_agreement": config.min_agreement,
            "min_labels": config.min_labels}  # fmt: skip


def snapshot_holds_label(label) -> bool:
    """Whether a snapshot of the label's project froze it, or will when its job runs: one not
    failed whose cut-off (``max_label_id``) reaches the label and whose kinds include it.
    ``annotation.services.task_undo`` then refuses to withdraw it (``label_frozen_guards``)."""
    kinds = (
        DatasetSnapshot.objects.filter(project_id=label.task.project_id, max_label_id__gte=label.pk)
        .exclude(status=SnapshotStatus.FAILED)
        .values_list("kinds", flat=True)
    )
    return any(not wanted or label.kind in wanted for wanted in kinds)


def snapshot_withdrawal_problem(snapshot: DatasetSnapshot) -> str:
    """Why the snapshot's data can no longer be served or trained on; "" when it can."""
    if snapshot.withdrawn_at is None:
        return ""
    return (
        f"snapshot {snapshot.pk} was withdrawn on {snapshot.withdrawn_at:%Y-%m-%d}: "
        f"{snapshot.withdrawn_reason or 'it holds a sealed text'}"
    )


def snapshots_holding_tasks(*, project_id: int, task_ids: list[int]) -> list[DatasetSnapshot]:
    """The project's snapshots (not failed, not withdrawn yet) that hold, or may hold, data of
    ``task_ids``. A built snapshot records exactly which labels it froze (``label_ids``): it
    holds the tasks if one of their labels, or a frozen adjudication of one, is among them.
    A snapshot still building may be reading the texts as we speak: counted as holding them if
    its cut-off reaches one of their labels (conservative). A pending one has not read yet:
    its build leaves sealed texts out (``readers.freeze_label_ids``)."""
    label_ids = np.fromiter(
        Label.objects.filter(task_id__in=task_ids).values_list("pk", flat=True), np.int64
    )
    task_keys = {str(t) for t in task_ids}
    if not len(label_ids) and not task_keys:
        return []
    holding = []
    candidates = DatasetSnapshot.objects.filter(
        project_id=project_id, withdrawn_at__isnull=True
    ).exclude(status__in=[SnapshotStatus.FAILED, SnapshotStatus.PENDING])
    for snapshot in candidates:
        if snapshot.status == SnapshotStatus.RUNNING and not snapshot.label_ids_sha256:
            if len(label_ids) and snapshot.max_label_id >= int(label_ids.min()):
                holding.append(snapshot)
            continue
        frozen = decode_ids(bytes(snapshot.label_ids))
        if np.isin(label_ids, frozen).any() or task_keys & set(snapshot.frozen_adjudications or {}):
            holding.append(snapshot)
    return holding


def snapshot_training_runs(*, snapshot_ids: list[int]) -> list[int]:
    """Ids of the training runs launched from these snapshots (what learnt from their data)."""
    return list(
        TrainingRun.objects.filter(dataset_snapshot_id__in=snapshot_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
