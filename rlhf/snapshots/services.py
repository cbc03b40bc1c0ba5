"""Snapshot services: create (enqueue), build (the job), export.

``snapshot_create`` records the request (project, kinds, pipeline config, the newest label
id) and enqueues the build once the transaction commits; the build freezes the exact label
ids and versions and the project's adjudications, runs ``rlhf.data.build_dataset`` over
them and writes the canonical export under ``TANDEM_ARTIFACT_ROOT/snapshots/<id>/export``.
Nothing changes a ready snapshot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import Label, Membership, Project, TaskKind
from annotation.quality.aggregation import POLICY_GOLD_WEIGHTED
from config.errors import Conflict, Gone, ValidationFailed
from config.process_setup import django_worker_setup
from rlhf.data.aggregate import KEEP_ALL
from rlhf.data.audit import SHOWN_SIDES_FILE, AuditCollector
from rlhf.data.card import render_data_card
from rlhf.data.export import iter_export_rows, reexport
from rlhf.data.idcodec import (
    decode_ids,
    decode_versions,
    encode_ids,
    encode_versions,
    ids_sha256,
)
from rlhf.data.peer_export import write_peer_exports
from rlhf.data.pipeline import PipelineConfig, build_dataset
from rlhf.data.records import SPLITS
from rlhf.data.truncation import TruncationConfig
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.snapshots.downloads import snapshot_manifest_write
from rlhf.snapshots.readers import (
    freeze_adjudications,
    freeze_label_ids,
    label_shards,
    parallel_reads_supported,
    sealed_labels_count,
)
from rlhf.snapshots.selectors import (
    snapshot_aggregation_default,
    snapshot_flag_policy,
    snapshot_training_runs,
    snapshot_withdrawal_problem,
    snapshots_holding_tasks,
)
from rlhf.training.provenance import code_version

logger = logging.getLogger(__name__)
PROGRESS_EVERY_S = 2.0


EXCLUDED_EVAL_PROMPTS = "excluded_eval_prompt_ids"


def snapshot_dir(snapshot: DatasetSnapshot) -> Path:
    return Path(settings.TANDEM_ARTIFACT_ROOT) / "snapshots" / str(snapshot.pk)


def snapshot_create(
    *,
    project: Project,
    created_by,
    name: str = "",
    config: dict | None = None,
    kinds: list[str] | None = None,
    enqueue: bool = True,
    exclude_failing_gold: bool = True,
) -> DatasetSnapshot:
    """Record a snapshot request and enqueue its build after commit (``enqueue=False``: the
    caller runs ``snapshot_build`` itself, as ``manage.py snapshot create --inline`` does).

    With ``exclude_failing_gold`` the labels of annotators who are failing gold checks (or
    paused) now are left out; their ids are written into the recorded config, so the snapshot
    can be rebuilt exactly.
    """
    from annotation.quality.selectors import annotator_gold_accuracy, annotators_failing_gold
    from rlhf.snapshots.tasks import snapshot_build_job

    if config is not None and not isinstance(config, dict):
        # A JSON field accepts any JSON: `true` or `[1]` was an AttributeError, a 500.
        raise ValidationFailed("config must be an object", code="invalid_config")
    config = dict(config or {})
    # The request's flag policy over the project's (``snapshot_flag_policy``), recorded whole.
    requested_flags = config.get("flags")
    if requested_flags is not None and not isinstance(requested_flags, dict):
        raise ValidationFailed("config.flags must be an object", code="invalid_config")
    config["flags"] = {**snapshot_flag_policy(project=project), **(requested_flags or {})}
    # Likewise the aggregation: the request's fields over the project's setting.
    requested_aggregation = config.get("aggregation")
    if requested_aggregation is not None and not isinstance(requested_aggregation, dict):
        raise ValidationFailed("config.aggregation must be an object", code="invalid_config")
    config["aggregation"] = {
        **snapshot_aggregation_default(project=project),
        **(requested_aggregation or {}),
    }
    try:
        pipeline = PipelineConfig.from_dict(config)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValidationFailed(f"invalid pipeline config: {exc}", code="invalid_config") from None
    if (
        pipeline.aggregation.policy == POLICY_GOLD_WEIGHTED
        and not pipeline.aggregation.gold_accuracy
    ):
        # Recorded whole, so a rebuild weighs every annotator as this one did.
        pipeline = dataclasses.replace(
            pipeline,
            aggregation=dataclasses.replace(
                pipeline.aggregation, gold_accuracy=annotator_gold_accuracy(project)
            ),
        )
    if exclude_failing_gold:
        failing = annotators_failing_gold(project)
        if failing:
            pipeline = dataclasses.replace(
                pipeline,
                aggregation=dataclasses.replace(
                    pipeline.aggregation,
                    exclude_annotators=pipeline.aggregation.exclude_annotators | failing,
                ),
            )
    kinds = sorted(set(kinds or []))
    unknown = set(kinds) - set(TaskKind.values)
    if unknown:
        raise ValidationFailed(f"unknown label kinds {sorted(unknown)}", code="invalid_kinds")
    max_label_id = Label.objects.filter(task__project=project).aggregate(m=Max("id"))["m"] or 0
    snapshot = DatasetSnapshot.objects.create(
        project=project,
        name=name[:200],
        created_by=created_by,
        kinds=kinds,
        max_label_id=max_label_id,
        # The pinned evaluation prompts as they are now: their labels stay out of this
        # snapshot (recorded, so a rebuild leaves out the same ones).
        config={
            **pipeline.as_dict(),
            EXCLUDED_EVAL_PROMPTS: sorted(
                int(i) for i in (project.options or {}).get("eval_prompt_ids", [])
            ),
        },
        split_seed=pipeline.split.seed,
        code_version=code_version(),
        progress={"stage": "queued", "done": 0, "total": None},
    )
    if enqueue:
        transaction.on_commit(lambda: snapshot_build_job.enqueue(snapshot_id=snapshot.pk))
    return snapshot


def snapshots_withdraw_for_sealed_text(
    *, project, task_ids: list[int], subject: str, reason: str, details: dict
) -> None:
    """``annotation.services.hooks.text_sealed_hooks``: withdraw every snapshot that holds
    the sealed text (``snapshots_holding_tasks``). Their files stay as written (a frozen
    snapshot is never rewritten, and runs keep the data hash they trained on) but are no longer
    served, and no new run starts from them. Adds ``withdrawn_snapshots`` and
    ``training_runs`` (the runs trained on them: what learnt the text) to the audit details."""
    holding = snapshots_holding_tasks(project_id=project.pk, task_ids=task_ids)
    ids = [s.pk for s in holding]
    DatasetSnapshot.objects.filter(pk__in=ids).update(
        withdrawn_at=timezone.now(),
        withdrawn_reason=f"it holds a text sealed as personal data ({subject}): {reason}"[:500],
    )
    details["withdrawn_snapshots"] = sorted(ids)
    details["training_runs"] = snapshot_training_runs(snapshot_ids=ids)


def snapshot_build(
    *, snapshot_id: int, workers: int | None = None, on_progress=None
) -> DatasetSnapshot:
    """Freeze the labels and run the pipeline (idempotent: a ready snapshot is left as is).

    ``on_progress(stage, done, total)`` is called as the build goes (benchmarks, commands).
    """
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.select_for_update().get(pk=snapshot_id)
        if snapshot.status == SnapshotStatus.READY:
            return snapshot
        snapshot.status = SnapshotStatus.RUNNING
        snapshot.started_at = timezone.now()
        snapshot.error = ""
        snapshot.save(update_fields=["status", "started_at", "error"])
    try:
        return _build(snapshot, workers=workers, on_progress=on_progress)
    except Exception as exc:
        logger.exception("snapshot %s failed", snapshot_id)
        DatasetSnapshot.objects.filter(pk=snapshot_id).update(
            status=SnapshotStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise


def _build(snapshot: DatasetSnapshot, *, workers: int | None, on_progress) -> DatasetSnapshot:
    if not snapshot.label_ids_sha256:
        # First attempt: freeze exactly which labels (and versions) this snapshot holds.
        ids, versions, counts = freeze_label_ids(
            project_id=snapshot.project_id,
            max_label_id=snapshot.max_label_id,
            kinds=snapshot.kinds,
            exclude_prompt_ids=snapshot.config.get(EXCLUDED_EVAL_PROMPTS, []),
        )
        snapshot.label_ids = encode_ids(ids)
        snapshot.label_versions = encode_versions(versions)
        snapshot.label_ids_sha256 = ids_sha256(ids, versions)
        snapshot.label_count = len(ids)
        snapshot.counts_by_kind = counts
        snapshot.frozen_adjudications = freeze_adjudications(project_id=snapshot.project_id)
        snapshot.save(
            update_fields=[
                "frozen_adjudications",
                "label_ids",
                "label_versions",
                "label_ids_sha256",
                "label_count",
                "counts_by_kind",
            ]
        )
    else:
        ids = decode_ids(bytes(snapshot.label_ids))
        versions = decode_versions(bytes(snapshot.label_versions))

    export_dir = snapshot_dir(snapshot) / "export"
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    if export_dir.exists():
        shutil.rmtree(export_dir)
    last = [0.0]

    def progress(stage: str, done: int, total: int | None) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or stage != "read":
            last[0] = now
            DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
                progress={"stage": stage, "done": done, "total": total}
            )

    config = PipelineConfig.from_dict(snapshot.config)
    workers = settings.TANDEM_SNAPSHOT_WORKERS if workers is None else workers
    if not parallel_reads_supported():
        workers = 0  # worker processes read PostgreSQL directly; elsewhere read in-process
    result = build_dataset(
        shards=label_shards(
            ids,
            versions,
            workers=workers,
            adjudications=snapshot.frozen_adjudications,
        ),
        config=config,
        export_dir=export_dir,
        workers=workers,
        workdir=snapshot_dir(snapshot),
        progress=progress,
        total_labels=len(ids),
        worker_setup=django_worker_setup,
        manifest_extra={
            "snapshot_id": snapshot.pk,
            "project_id": snapshot.project_id,
            "label_ids_sha256": snapshot.label_ids_sha256,
            "code_version": snapshot.code_version,
        },
    )
    result.report["label_sources"] = _label_sources(ids)
    result.report["sealed_labels_dropped"] = sealed_labels_count(
        project_id=snapshot.project_id, max_label_id=snapshot.max_label_id, kinds=snapshot.kinds
    )
    started = time.monotonic()
    result.report["audit"] = _audit(snapshot, ids, versions, export_dir, config=config)
    result.report["timings_s"]["audit"] = round(time.monotonic() - started, 2)
    sources = sorted(
        {
            f"{s or 'unnamed source'}"
            for s in snapshot.project.prompts.values_list("source", flat=True).distinct()[:20]
        }
    )
    card = render_data_card(
        result.report,
        title=f"{snapshot.project.name}: snapshot {snapshot.pk}"
        + (f" ({snapshot.name})" if snapshot.name else ""),
        sources=[f"Project {snapshot.project.name!r}, prompt sources: {', '.join(sources)}"],
    )
    (export_dir / "DATA_CARD.md").write_text(card)
    started = time.monotonic()
    snapshot_manifest_write(export_dir=export_dir)  # last: it hashes every file written above
    result.report["timings_s"]["manifest"] = round(time.monotonic() - started, 2)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
        status=SnapshotStatus.READY,
        finished_at=timezone.now(),
        row_counts=result.report["splits"],
        content_sha256=result.content_sha256,
        report=result.report,
        data_card=card,
        export_path=str(export_dir),
        progress={"stage": "done", "done": len(ids), "total": len(ids)},
    )
    snapshot.refresh_from_db()
    return snapshot


def _label_sources(ids) -> dict:
    """Who the frozen labels came from: the project's annotators, the served traffic's
    feedback (``external:served-<key>``, by source) and other imports (external annotators)."""
    from django.db.models import Count

    from annotation.models import Label
    from annotation.services.served import SERVED_ANNOTATOR_PREFIX

    by_name: dict[str, int] = {}
    ids = list(ids)
    for start in range(0, len(ids), 20_000):
        rows = (
            Label.objects.filter(pk__in=ids[start : start + 20_000])
            .values("annotator__username")
            .annotate(n=Count("id"))
        )
        for row in rows:
            name = row["annotator__username"]
            by_name[name] = by_name.get(name, 0) + row["n"]
    served = {
        name.removeprefix("external:"): n
        for name, n in by_name.items()
        if name.startswith(SERVED_ANNOTATOR_PREFIX)
    }
    imported = sum(
        n for name, n in by_name.items() if name.startswith("external:") and name[9:] not in served
    )
    return {
        "annotators": sum(n for name, n in by_name.items() if not name.startswith("external:")),
        "served": sum(served.values()),
        "served_by_source": dict(sorted(served.items())),
        "imported": imported,
    }


def _audit(snapshot, ids, versions, export_dir: Path, *, config: PipelineConfig) -> dict:
    """The bias audit (``rlhf.data.audit``) of a built snapshot: its frozen labels read once
    more, its exported preference rows, and the annotator groups of the project's members as
    they are now (recorded in the audit). Writes the shown side of each preference row whose
    side is known beside the export (``SHOWN_SIDES_FILE``), for reward-model probes."""
    collector = AuditCollector(
        seed=config.split.seed, rows_by_label=config.aggregation.policy == KEEP_ALL
    )
    for shard in label_shards(
        ids, versions, workers=0, adjudications=snapshot.frozen_adjudications
    ):
        collector.observe_records(shard())
    for split in SPLITS:
        for row in iter_export_rows(export_dir, "preference", split):
            collector.observe_preference(row)
    groups = dict(
        Membership.objects.filter(project_id=snapshot.project_id)
        .exclude(group="")
        .values_list("user_id", "group")
    )
    sides = export_dir / SHOWN_SIDES_FILE
    sides.parent.mkdir(parents=True, exist_ok=True)
    sides.write_bytes(orjson.dumps(collector.row_sides))
    return collector.result(groups)


def snapshot_export_enqueue(
    *,
    snapshot: DatasetSnapshot,
    name: str,
    max_prompt_chars: int | None = None,
    tools: list[str] | None = None,
    actor=None,
) -> None:
    """Check an export request now, write it in the background (queue "snapshots"). Who asked
    is recorded in the data audit log (a refused request records nothing)."""
    from rlhf.snapshots.tasks import snapshot_export_job

    if problem := snapshot_withdrawal_problem(snapshot):
        raise Gone(problem, code="snapshot_withdrawn")
    if snapshot.status != SnapshotStatus.READY:
        raise Conflict("the snapshot is not ready", code="snapshot_not_ready")
    if (snapshot_dir(snapshot) / "exports" / name).exists():
        raise Conflict(f"an export named {name!r} exists", code="export_exists")
    snapshot_export_audit(
        snapshot=snapshot,
        actor=actor,
        details={
            "via": "api",
            "name": name,
            "max_prompt_chars": max_prompt_chars,
            "tools": tools or [],
        },
    )
    transaction.on_commit(
        lambda: snapshot_export_job.enqueue(
            snapshot_id=snapshot.pk, name=name, max_prompt_chars=max_prompt_chars, tools=tools
        )
    )


def snapshot_export_audit(*, snapshot: DatasetSnapshot, actor, details: dict) -> None:
    """One ``snapshot_exported`` event: who took the snapshot's data out, and how."""
    data_audit_record(
        action=DataAuditAction.SNAPSHOT_EXPORTED,
        subject=f"snapshot:{snapshot.pk}",
        actor=actor,
        project=snapshot.project,
        details=details,
    )


def snapshot_export(
    *,
    snapshot: DatasetSnapshot,
    name: str | None = None,
    export_dir: Path | None = None,
    max_prompt_chars: int | None = None,
    max_prompt_tokens: int | None = None,
    count_tokens=None,
    tools: list[str] | None = None,
    on_progress=None,
) -> dict:
    """Write an export of a ready snapshot (optionally truncating long prompts from the
    left, and with its preference pairs also in the shapes of the peer ``tools``: Label
    Studio, Argilla) and return its manifest (``on_progress``: see ``rlhf.data.export.reexport``).
    The rows come from the snapshot's canonical export, so
    they are exactly the snapshot's content whatever happened to the labels since."""
    if problem := snapshot_withdrawal_problem(snapshot):
        raise Gone(problem, code="snapshot_withdrawn")
    if snapshot.status != SnapshotStatus.READY:
        raise Conflict("the snapshot is not ready", code="snapshot_not_ready")
    source = Path(snapshot.export_path)
    if not (source / "manifest.json").is_file():
        raise Conflict("the snapshot's canonical export is missing", code="export_missing")
    if export_dir is None:
        stamp = name or timezone.now().strftime("%Y%m%dT%H%M%S")
        if not stamp.replace("-", "").replace("_", "").isalnum():
            raise ValidationFailed("export name: letters, digits, - and _ only", code="bad_name")
        export_dir = snapshot_dir(snapshot) / "exports" / stamp
    try:
        truncation = TruncationConfig(
            max_prompt_chars=max_prompt_chars,
            max_prompt_tokens=max_prompt_tokens,
            count_tokens=count_tokens,
        )
    except ValueError as exc:
        raise ValidationFailed(str(exc), code="invalid_truncation") from None
    manifest = reexport(source, Path(export_dir), truncation=truncation, on_progress=on_progress)
    if tools:
        manifest["peer_exports"] = write_peer_exports(Path(export_dir), list(tools))
        (Path(export_dir) / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True)
        )
    shutil.copyfile(source / "DATA_CARD.md", Path(export_dir) / "DATA_CARD.md")
    if (source / SHOWN_SIDES_FILE).is_file():  # snapshots built before the audit have none
        (Path(export_dir) / SHOWN_SIDES_FILE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / SHOWN_SIDES_FILE, Path(export_dir) / SHOWN_SIDES_FILE)
    return manifest
