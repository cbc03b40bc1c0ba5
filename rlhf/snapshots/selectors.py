"""Reads of dataset snapshots, always scoped through the project access gate."""

from __future__ import annotations

import json
from pathlib import Path

from django.http import Http404

from annotation.access import access_project
from annotation.roles import Capability
from annotation.services import project_aggregation_config, project_flag_policy
from rlhf.models import DatasetSnapshot, SnapshotStatus


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
