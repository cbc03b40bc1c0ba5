"""Reads of training runs, always through the access gates."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from django.conf import settings
from django.http import Http404

from annotation.access import access_project
from annotation.roles import Capability
from config.errors import ValidationFailed
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import versions as run_versions
from rlhf.runs.access import access_training_run
from rlhf.training.config import METHOD_TITLES, METHODS, config_schema
from rlhf.training.data import SHAPE_FOR_METHOD
from rlhf.training.intervals import wilson_interval

# Big fields a list of runs never shows.
HEAVY_FIELDS = ("config", "log_tail", "result", "checkpoints", "attempts_log", "artifacts")
# What a live watcher needs of a run (the websocket message and the page header).
LIVE_FIELDS = (
    "id", "status", "attempt", "revision", "progress", "heartbeat_at", "started_at",
    "finished_at", "cancel_requested", "error", "device", "worker", "metrics",
)  # fmt: skip


def folder_run_owner(folder: Path) -> str | None:
    """The one rule for "a run's folder": the first part of ``folder`` (resolved) under the
    runs root (``<artifact root>/runs/<run id>/attempt-<n>/...``, which holds every project's
    runs), ``""`` for the runs root itself, or None when the folder lies outside it. Whatever
    lies under the runs root is some run's output (or would be a future run's)."""
    runs_root = (Path(settings.TANDEM_ARTIFACT_ROOT) / "runs").resolve()
    folder = Path(folder).resolve()
    if not folder.is_relative_to(runs_root):
        return None
    parts = folder.relative_to(runs_root).parts
    return parts[0] if parts else ""


def folder_of_any_run(folder: Path) -> bool:
    """Whether ``folder`` is (or lies in) a training run's artifact or attempt folder, of any
    project: a run's own output, which becomes a version only through review."""
    return folder_run_owner(folder) is not None


def folder_of_another_projects_run(folder: Path, project) -> bool:
    """Whether the resolved ``folder`` lies in a run's folder that is not a run of ``project``:
    weights a project may neither train from nor register, as it may not name another
    project's run."""
    owner = folder_run_owner(folder)
    if owner is None:
        return False
    return not (
        re.fullmatch(r"[0-9]{1,18}", owner)
        and TrainingRun.objects.filter(pk=int(owner), project=project).exists()
    )


def folder_refusal_for(folder: Path, project) -> str | None:
    """Why ``project`` may not name ``folder`` as a model, decided from the path alone
    (before anything inside it is read, so a refusal names no file of another project's):
    a run's folder of another project, or a folder holding the runs root (every project's
    runs)."""
    if folder_of_another_projects_run(folder, project):
        return "belongs to a run of another project"
    runs_root = (Path(settings.TANDEM_ARTIFACT_ROOT) / "runs").resolve()
    if runs_root.is_relative_to(Path(folder).resolve()):
        return "holds the training runs' folders of every project"
    return None


def training_run_list(*, user, project_id) -> list[TrainingRun]:
    project = access_project(user, project_id, capability=Capability.DATA)
    return list(
        TrainingRun.objects.filter(project=project)
        .select_related("created_by")
        .defer(*HEAVY_FIELDS)
    )


def training_run_get(*, user, run_id, capability: str = Capability.DATA) -> TrainingRun:
    return access_training_run(user, run_id, capability=capability)


def training_run_state(*, run_id: int) -> dict | None:
    """The live fields of a run, JSON-ready (ISO dates)."""
    row = TrainingRun.objects.filter(pk=run_id).values(*LIVE_FIELDS, "log_tail").first()
    if row is None:
        return None
    for key in ("heartbeat_at", "started_at", "finished_at"):
        if row[key] is not None:
            row[key] = row[key].isoformat()
    return row


def training_run_revision(*, run_id: int) -> int | None:
    return TrainingRun.objects.filter(pk=run_id).values_list("revision", flat=True).first()


def training_run_points_after(*, run_id: int, after_id: int, limit: int = 5000) -> list[list]:
    """Metric points newer than ``after_id``, oldest first: ``[id, name, step, value]``."""
    rows = (
        TrainingRunMetric.objects.filter(run_id=run_id, id__gt=after_id)
        .order_by("id")
        .values_list("id", "name", "step", "value")[:limit]
    )
    return [list(row) for row in rows]


def training_run_last_point_id(*, run_id: int) -> int:
    last = (
        TrainingRunMetric.objects.filter(run_id=run_id)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return last or 0


def training_run_metrics(
    *, run: TrainingRun, after_id: int = 0, names: list[str] | None = None, max_points: int = 0
) -> dict:
    """A run's metric series: ``{"series": {name: [[step, value], ...]}, "last_id": id}``.

    ``max_points`` > 0 thins each series to about that many points (evenly by position,
    always keeping the last), so a 100k-point run still draws from a small payload.
    """
    rows = TrainingRunMetric.objects.filter(run=run, id__gt=after_id)
    if names:
        rows = rows.filter(name__in=names)
    series: dict[str, list] = defaultdict(list)
    last_id = after_id
    for point_id, name, step, value in rows.order_by("id").values_list(
        "id", "name", "step", "value"
    ):
        series[name].append([step, value])
        last_id = max(last_id, point_id)
    if max_points > 0:
        for name, points in series.items():
            if len(points) > max_points:
                stride = len(points) / max_points
                thinned = [points[int(i * stride)] for i in range(max_points - 1)]
                series[name] = [*thinned, points[-1]]
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return {"series": dict(series), "last_id": last_id}


HELD_OUT_SPLITS = ("validation", "test")


def training_run_held_out_accuracy(*, run: TrainingRun) -> list[dict]:
    """Each held-out split's final pairwise accuracy with its 95% Wilson interval
    (``held_out_accuracy`` of the run's result metrics)."""
    return held_out_accuracy(run.metrics)


def held_out_accuracy(metrics: dict | None) -> list[dict]:
    """Each held-out split's pairwise accuracy with its 95% Wilson interval.

    A reward run's result metrics (and the registered version's, a copy) hold
    ``{split: {"accuracy", "pairs", ...}}``; 43 test pairs give an interval about 30 points
    wide, so pages show the interval beside the figure and say when it reaches down to chance
    (0.5). Splits without pairs are left out.
    """
    rows = []
    for split in HELD_OUT_SPLITS:
        measured = (metrics or {}).get(split)
        if not isinstance(measured, dict):
            continue
        accuracy, pairs = measured.get("accuracy"), measured.get("pairs")
        if not isinstance(accuracy, int | float) or not isinstance(pairs, int) or pairs <= 0:
            continue
        low, high = wilson_interval(float(accuracy), pairs)
        rows.append(
            {
                "split": split,
                "pairs": pairs,
                "accuracy": float(accuracy),
                "low": low,
                "high": high,
                "chance_inside": low <= 0.5,
            }
        )
    return rows


def training_methods() -> list[dict]:
    """Every method with its title, the export shape it reads and its documented config."""
    return [
        {
            "method": m,
            "title": METHOD_TITLES[m],
            "shape": SHAPE_FOR_METHOD[m],
            "fields": config_schema(m),
        }
        for m in METHODS
    ]


def training_run_launch_choices(*, project) -> dict:
    """What a launch form offers: ready snapshots, and versions and runs to start from."""
    runs = list(
        TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED).only(
            "id", "name", "method", "artifact_dir"
        )
    )
    versions = run_versions.launch_choices(project=project)
    return {
        "policy_versions": [v for v in versions if v.kind == "policy"],
        "reward_versions": [v for v in versions if v.kind == "reward"],
        "snapshots": list(
            # A withdrawn snapshot (it holds a sealed text) is not offered: launching is refused.
            DatasetSnapshot.objects.filter(
                project=project, status=SnapshotStatus.READY, withdrawn_at__isnull=True
            ).only("id", "name", "row_counts", "created_at")
        ),
        "model_runs": [r for r in runs if r.method != "reward"],
        "reward_runs": [r for r in runs if r.method == "reward"],
    }


def training_run_artifact_path(*, run: TrainingRun, relative: str) -> Path | None:
    """The file of one recorded artifact, or None (never a path outside the run's folder)."""
    if relative not in {a["path"] for a in run.artifacts}:
        return None
    path = (Path(run.artifact_dir) / relative).resolve()
    if not path.is_relative_to(Path(run.artifact_dir).resolve()) or not path.is_file():
        return None
    return path


COMPARE_MAX_RUNS = 8
# Facts of a run shown above its config in a comparison (label, attribute).
COMPARE_FACTS = (("method", "method"), ("snapshot", "dataset_snapshot_id"), ("status", "status"))


def training_run_compare(*, user, project_id, run_ids: list) -> dict:
    """Two to eight runs of one project, side by side: ``{"project", "runs", "rows"}``.

    ``run_ids`` keep their order (repeats dropped). ``rows`` is one entry per fact and config
    field any of the runs has, ``{"name", "values": [one per run, None where a run's method
    lacks the field], "differs": bool}``: the facts first, then config fields by name. A run of
    another project, or one that does not exist, is a 404 like any run page.
    """
    project = access_project(user, project_id, capability=Capability.DATA)
    ids: list[int] = []
    for raw in run_ids:
        try:
            run_id = int(raw)
        except (TypeError, ValueError):
            raise ValidationFailed(
                "run ids are whole numbers", code="invalid", field="run"
            ) from None
        if run_id not in ids:
            ids.append(run_id)
    if not 2 <= len(ids) <= COMPARE_MAX_RUNS:
        raise ValidationFailed(
            f"pick between 2 and {COMPARE_MAX_RUNS} runs to compare", code="run_count", field="run"
        )
    found = {
        run.pk: run
        for run in TrainingRun.objects.filter(project=project, pk__in=ids).only(
            "id", "project_id", "name", "method", "status", "dataset_snapshot_id", "config"
        )
    }
    if len(found) != len(ids):
        raise Http404("No such training run.")
    runs = [found[run_id] for run_id in ids]
    rows = [
        _compare_row(label, [getattr(run, attribute) for run in runs])
        for label, attribute in COMPARE_FACTS
    ]
    names = sorted(set().union(*(run.config for run in runs)))
    rows += [_compare_row(name, [run.config.get(name) for run in runs]) for name in names]
    return {"project": project, "runs": runs, "rows": rows}


def _compare_row(name: str, values: list) -> dict:
    return {"name": name, "values": values, "differs": any(v != values[0] for v in values[1:])}


def training_run_compare_curves(*, runs: list[TrainingRun], max_points: int = 500) -> dict:
    """The compared runs' metric series, per metric then run: ``{"runs": [{id, label}],
    "metrics": {name: {run id (text): [[step, value], ...]}}}``, each series thinned to about
    ``max_points`` (``training_run_metrics``)."""
    metrics: dict[str, dict[str, list]] = defaultdict(dict)
    for run in runs:
        for name, points in training_run_metrics(run=run, max_points=max_points)["series"].items():
            metrics[name][str(run.pk)] = points
    return {
        "runs": [
            {"id": run.pk, "label": f"#{run.pk} {run.name or run.method}".strip()} for run in runs
        ],
        "metrics": {name: metrics[name] for name in sorted(metrics)},
    }
