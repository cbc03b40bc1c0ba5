"""Training-run services for people: launch, cancel, retry, and re-queue runs whose worker died.

A run is launched into ``queued`` and its job is enqueued once the transaction commits. The
job carries ``(run_id, attempt)``: ``attempt`` is the fencing token, and every re-queue bumps
it, so a worker that lost its run (presumed dead, then alive again) can no longer write. The
worker's side lives in ``rlhf.runs.execution``.

Dead workers are found without a cron: ``training_run_requeue_stale`` runs when any training
job starts, when a run is launched, from a per-attempt watchdog job that the worker schedules
on the training queue (``training_run_watchdog_job``), and from ``manage.py train reap``.

Other code reacts to a finished run through ``training_run_succeeded_hooks``; the model
registry (the layer above, which rlhf never imports) appends the one that registers the
trained model as a candidate version. Registered versions reach a launch through
``rlhf.runs.versions``, which the registry fills.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.audit import DataAuditAction, data_audit_record
from annotation.models import Project
from config.errors import Conflict, ValidationFailed
from config.safepaths import FolderNotAllowed, allowed_model_folder
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun
from rlhf.runs import versions
from rlhf.runs.selectors import folder_refusal_for, training_run_artifact_path
from rlhf.snapshots.selectors import snapshot_withdrawal_problem
from rlhf.training.architecture import backbone_conflict
from rlhf.training.config import (
    METHOD_SPECS,
    METHOD_TITLES,
    METHODS,
    ConfigError,
    config_from_dict,
    preset_values,
)

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
LOG_TAIL_CHARS = 20_000
ONLINE_METHODS = tuple(name for name, spec in METHOD_SPECS.items() if spec.samples_answers)
# Config fields that name a model folder; each follows config.safepaths.allowed_model_folder.
MODEL_FOLDER_FIELDS = ("base_model", "reward_model", "reference_model", "value_model")

# Called with the run once its success has committed. The model registry appends (in its
# AppConfig.ready) the one that registers the trained model as a candidate version; others
# may follow. A hook that raises is logged; the run stays succeeded.
training_run_succeeded_hooks: list[Callable[[TrainingRun], None]] = []


# --------------------------------------------------------------------------- shared helpers
def training_run_artifact_download(*, run: TrainingRun, relative: str, actor) -> Path | None:
    """The file of one recorded artifact for ``actor`` to download, recorded in the data audit
    log (who took which file of which run); None, and nothing recorded, for no such file."""
    path = training_run_artifact_path(run=run, relative=relative)
    if path is None:
        return None
    data_audit_record(
        action=DataAuditAction.RUN_ARTIFACT_DOWNLOADED,
        subject=f"run:{run.pk}:{relative}",
        actor=actor,
        project=run.project,
        details={"path": relative, "size_bytes": path.stat().st_size},
    )
    return path


def run_group(run_id: int) -> str:
    """The channel-layer group of a run's watchers."""
    return f"training-run-{int(run_id)}"


def training_run_notify(run_id: int) -> None:
    """Tell the run's watchers that it changed, once the current transaction commits.

    The message carries no data: consumers read the run from the database (the truth).
    """

    def send():
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(
                run_group(run_id), {"type": "run.changed", "run_id": int(run_id)}
            )
        except Exception:  # a push is a hint: losing one never fails the write it follows
            logger.warning("could not notify watchers of run %s", run_id, exc_info=True)

    transaction.on_commit(send)


def log_lines_append(tail: str, *lines: str) -> str:
    """``tail`` with ``lines`` appended, cut to the last LOG_TAIL_LINES / LOG_TAIL_CHARS."""
    kept = (tail.splitlines() if tail else []) + [line for line in lines if line]
    text = "\n".join(kept[-LOG_TAIL_LINES:])
    return text[-LOG_TAIL_CHARS:]


def log_line(message: str, *, attempt: int | None = None) -> str:
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} [attempt {attempt}] {message}" if attempt else f"{stamp} {message}"


def json_safe(value):
    """``value`` with NaN and infinities replaced by None (PostgreSQL's JSON refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def run_dir(run_id: int) -> Path:
    return Path(settings.TANDEM_ARTIFACT_ROOT) / "runs" / str(int(run_id))


def _enqueue(run_id: int, attempt: int) -> None:
    from rlhf.runs.tasks import training_run_job

    transaction.on_commit(lambda: training_run_job.enqueue(run_id=run_id, attempt=attempt))


def _model_folder_error(path: str, project: Project) -> str | None:
    try:
        # A run's folder is allowed to that run's project only, as base_model_run is.
        resolved = allowed_model_folder(path, refuse=lambda f: folder_refusal_for(f, project))
    except FolderNotAllowed as refused:
        return refused.reason
    if not any(resolved.glob("*.safetensors")):
        return "holds no .safetensors weights (only safetensors are loaded)"
    return None


def _source_run(run: TrainingRun | None, project: Project, what: str) -> TrainingRun | None:
    if run is None:
        return None
    if run.project_id != project.pk:
        raise ValidationFailed(f"the {what} run belongs to another project", code="foreign_run")
    if run.status != RunStatus.SUCCEEDED or not run.artifact_dir:
        raise ValidationFailed(f"the {what} run has not succeeded", code="run_not_succeeded")
    return run


def run_model_dir(run: TrainingRun) -> str:
    """The folder of a succeeded run's trained model (weights or adapter, with tokenizer)."""
    return str(Path(run.result.get("model_dir") or Path(run.artifact_dir) / "model"))


def _source_version(version, project: Project, kind: str | None) -> str:
    """The folder of a registered version (see ``rlhf.runs.versions``) a run may start from."""
    if version.project_id != project.pk:
        raise ValidationFailed(
            "the model version belongs to another project", code="foreign_version"
        )
    if kind is not None and version.kind != kind:
        raise ValidationFailed(f"version {version.label} is not a {kind} model", code="wrong_kind")
    if version.is_retired:
        raise ValidationFailed(
            f"version {version.label} is {version.state}", code="retired_version"
        )
    return version.artifact_dir


# --------------------------------------------------------------------------- launch
def training_run_launch(
    *,
    project: Project,
    created_by,
    method: str,
    snapshot: DatasetSnapshot,
    config: dict | None = None,
    name: str = "",
    base_model_version=None,
    reward_model_version=None,
    base_model_run: TrainingRun | None = None,
    reward_model_run: TrainingRun | None = None,
    max_attempts: int = 3,
    preset: str = "",
) -> TrainingRun:
    """Validate a run request, record it as ``queued`` and enqueue its job after commit.

    ``config`` holds the method's config fields (missing ones take the ``preset``'s values, a
    name from ``PRESETS``, then the dataclass defaults).
    The base (parent) model is a registered ``base_model_version``, another run's output
    (``base_model_run``) or the ``base_model`` folder in ``config``; an online method's reward
    model likewise (``reward_model_version``, ``reward_model_run``, ``reward_model``).
    Refusals raise ValidationFailed; ``extra["fields"]`` maps config fields to their errors.
    """
    if method not in METHODS:
        raise ValidationFailed(f"unknown method {method!r}", code="invalid_method")
    if snapshot.project_id != project.pk:
        raise ValidationFailed("the snapshot belongs to another project", code="foreign_snapshot")
    if problem := snapshot_withdrawal_problem(snapshot):
        raise ValidationFailed(problem, code="snapshot_withdrawn", field="snapshot")
    if snapshot.status != SnapshotStatus.READY or not snapshot.export_path:
        raise ValidationFailed("the snapshot is not ready", code="snapshot_not_ready")
    shapes = METHOD_SPECS[method].accepted_shapes  # online: the prompts of any shape
    if not any((snapshot.row_counts or {}).get(s, {}).get("train") for s in shapes):
        raise ValidationFailed(
            f"the snapshot has no training rows for {method} (shape {shapes[0]})",
            code="snapshot_has_no_rows",
        )
    if not 1 <= int(max_attempts) <= 20:
        raise ValidationFailed("max_attempts must be between 1 and 20", code="invalid_attempts")

    try:
        values = {**preset_values(method, preset), **(config or {})}
    except ConfigError as exc:
        raise ValidationFailed("unknown preset", code="invalid_preset", fields=exc.errors) from None
    if base_model_version is not None and base_model_run is not None:
        raise ValidationFailed("give a base model version or a run, not both", code="two_bases")
    if reward_model_version is not None and reward_model_run is not None:
        raise ValidationFailed("give a reward model version or a run, not both", code="two_rms")
    base_model_run = _source_run(base_model_run, project, "base model")
    reward_model_run = _source_run(reward_model_run, project, "reward model")
    if base_model_run is not None:
        values["base_model"] = run_model_dir(base_model_run)
    if reward_model_run is not None:
        if reward_model_run.method != "reward":
            raise ValidationFailed("the reward model run is not a reward run", code="not_reward")
        values["reward_model"] = run_model_dir(reward_model_run)
    # Registered versions were inspected by the registry (safetensors only, no custom code,
    # hashed), so their folders may lie outside TANDEM_MODEL_ROOTS.
    registered = set()
    if base_model_version is not None:
        values["base_model"] = _source_version(base_model_version, project, None)
        registered.add(values["base_model"])
    if reward_model_version is not None:
        values["reward_model"] = _source_version(reward_model_version, project, "reward")
        registered.add(values["reward_model"])
    try:
        parsed = config_from_dict(method, values)
    except ConfigError as exc:
        raise ValidationFailed(
            "invalid training config", code="invalid_config", fields=exc.errors
        ) from None
    except TypeError as exc:  # a value of a type the dataclass cannot take at all
        raise ValidationFailed(str(exc), code="invalid_config") from None
    errors = {}
    for field in MODEL_FOLDER_FIELDS:
        path = getattr(parsed, field, "")
        if path and path not in registered:
            error = _model_folder_error(path, project)
            if error:
                errors[field] = error
    encoder_reward = method == "reward" and parsed.backbone == "encoder"
    if not parsed.base_model and not encoder_reward:
        errors["base_model"] = "a base model folder is required"
    if method == "reward" and parsed.base_model and "base_model" not in errors:
        conflict = backbone_conflict(parsed.backbone, parsed.base_model)
        if conflict:
            errors[conflict[0]] = conflict[1]
    if parsed.distributed == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        errors["distributed"] = (
            "DeepSpeed is an optional extra that is not installed here (pip install deepspeed)"
        )
    if errors:
        raise ValidationFailed("invalid training config", code="invalid_config", fields=errors)

    training_run_requeue_stale()
    with transaction.atomic():
        run = TrainingRun.objects.create(
            project=project,
            name=name[:200],
            method=method,
            method_title=METHOD_TITLES[method],
            config=json_safe(asdict(parsed)),
            dataset_snapshot=snapshot,
            data_path=snapshot.export_path,
            base_model_run=base_model_run,
            reward_model_run=reward_model_run,
            max_attempts=max_attempts,
            created_by=created_by,
            log_tail=log_line(
                f"queued by {getattr(created_by, 'username', 'system')}: {METHOD_TITLES[method]} "
                f"on snapshot {snapshot.pk}"
            ),
        )
        versions.run_launched(
            run=run,
            base_model_version=base_model_version,
            reward_model_version=reward_model_version,
        )
    _enqueue(run.pk, run.attempt)
    return run


# --------------------------------------------------------------------------- cancel, retry
@transaction.atomic
def training_run_cancel(*, run: TrainingRun, cancelled_by) -> TrainingRun:
    """Cancel a queued run at once; ask a running one to stop (its worker stops cleanly at the
    next step, within one heartbeat, and marks it cancelled)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    who = getattr(cancelled_by, "username", "system")
    if run.status == RunStatus.QUEUED:
        run.status = RunStatus.CANCELLED
        run.finished_at = timezone.now()
        run.log_tail = log_lines_append(run.log_tail, log_line(f"cancelled by {who}"))
    elif run.status == RunStatus.RUNNING:
        if run.cancel_requested:
            return run
        run.cancel_requested = True
        run.log_tail = log_lines_append(
            run.log_tail, log_line(f"cancel requested by {who}", attempt=run.attempt)
        )
    else:
        raise Conflict(f"the run has already {run.status}", code="run_finished")
    run.revision += 1
    run.save(update_fields=["status", "finished_at", "cancel_requested", "log_tail", "revision"])
    training_run_notify(run.pk)
    return run


@transaction.atomic
def training_run_retry(*, run: TrainingRun, retried_by) -> TrainingRun:
    """Queue a failed or cancelled run again as a new attempt; it resumes from its newest
    recorded checkpoint (the global step continues)."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise Conflict("only a failed or cancelled run can be retried", code="run_not_finished")
    run.attempt += 1
    run.max_attempts = max(run.max_attempts, run.attempt)
    run.status = RunStatus.QUEUED
    run.cancel_requested = False
    run.error = ""
    run.finished_at = None
    run.worker = ""
    who = getattr(retried_by, "username", "system")
    run.log_tail = log_lines_append(
        run.log_tail, log_line(f"retried by {who} as attempt {run.attempt}")
    )
    run.revision += 1
    run.save()
    _enqueue(run.pk, run.attempt)
    training_run_notify(run.pk)
    return run


# --------------------------------------------------------------------------- dead workers
def training_run_requeue_stale(*, now=None) -> list[int]:
    """Find running attempts whose heartbeat is older than TANDEM_RUN_STALE_SECONDS and
    release their runs: re-queued as the next attempt (resuming from the newest recorded
    checkpoint), cancelled if a cancel was pending, failed once max_attempts are spent.

    Safe to call from anywhere, any number of times at once: rows are locked (and skipped
    when another caller holds them), and the attempt bump fences off the lost worker.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TANDEM_RUN_STALE_SECONDS)
    released = []
    with transaction.atomic():
        stale = TrainingRun.objects.select_for_update(skip_locked=True).filter(
            status=RunStatus.RUNNING, heartbeat_at__lt=cutoff
        )
        for run in stale:
            _release_lost_attempt(run, now)
            released.append(run.pk)
    return released


def _release_lost_attempt(run: TrainingRun, now) -> None:
    silence = (now - run.heartbeat_at).total_seconds()
    _release_attempt(
        run,
        now,
        why=f"worker {run.worker} lost: no heartbeat for {silence:.0f} s",
        outcome="lost",
        error=f"the worker was lost {run.attempt} times (max_attempts={run.max_attempts})",
    )


def training_run_release_killed(*, run_id: int, attempt: int, reason: str, output: str) -> str:
    """A running attempt whose training process died without an error report (SIGKILL from
    the kernel's out-of-memory killer, a crash in a native library): re-queued as the next
    attempt, resuming from its newest recorded checkpoint, or failed with the reason once
    max_attempts are spent. Fenced on (run, attempt, running) like every worker write.
    Returns "requeued", "failed", "cancelled" or "lost" (the attempt no longer owns the run).
    """
    now = timezone.now()
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(pk=run_id, attempt=attempt, status=RunStatus.RUNNING)
            .first()
        )
        if run is None:
            return "lost"
        error = f"{reason} (attempt {attempt} of max_attempts={run.max_attempts})"
        if output:
            error = f"{error}\n\nlast output:\n{output}"
        _release_attempt(run, now, why=reason, outcome="killed", error=error)
        return {RunStatus.QUEUED: "requeued"}.get(run.status, str(run.status))


def _release_attempt(run: TrainingRun, now, *, why: str, outcome: str, error: str) -> None:
    lost = run.attempt
    lines = [log_line(why, attempt=lost)]
    for entry in run.attempts_log:
        if entry.get("attempt") == lost and not entry.get("ended_at"):
            entry.update(ended_at=now.isoformat(), outcome=outcome)
    run.worker = ""
    if run.cancel_requested:
        run.status = RunStatus.CANCELLED
        run.finished_at = now
        lines.append(log_line(f"cancelled (the cancel was pending when the attempt was {outcome})"))
    elif run.attempt >= run.max_attempts:
        run.status = RunStatus.FAILED
        run.finished_at = now
        run.error = error
        lines.append(log_line(f"failed: {error.splitlines()[0]}"))
    else:
        run.attempt += 1
        run.status = RunStatus.QUEUED
        resume = max((c["global_step"] for c in run.checkpoints), default=None)
        lines.append(
            log_line(
                f"re-queued as attempt {run.attempt}, resuming from "
                + (f"step {resume}" if resume is not None else "the start")
            )
        )
        _enqueue(run.pk, run.attempt)
    run.log_tail = log_lines_append(run.log_tail, *lines)
    run.revision += 1
    run.save()
    training_run_notify(run.pk)


def training_run_watch(*, run_id: int, attempt: int) -> str:
    """The watchdog job's body: reap stale runs; while this attempt runs, look again later."""
    from rlhf.runs.tasks import training_run_watchdog_job

    training_run_requeue_stale()
    run = TrainingRun.objects.filter(pk=run_id).only("status", "attempt", "heartbeat_at").first()
    if run is None or run.attempt != attempt or run.status != RunStatus.RUNNING:
        return "done"
    stale = timedelta(seconds=settings.TANDEM_RUN_STALE_SECONDS + 1)
    next_look = max(run.heartbeat_at + stale, timezone.now() + timedelta(seconds=1))
    training_run_watchdog_job.using(run_after=next_look).enqueue(run_id=run_id, attempt=attempt)
    return "watching"


# --------------------------------------------------------------------------- succeeded-hooks
def training_run_succeeded(run: TrainingRun) -> None:
    """Run every succeeded-hook on a committed, succeeded run; one failing spares the others."""
    for hook in list(training_run_succeeded_hooks):
        try:
            hook(run)
        except Exception:
            logger.exception("succeeded-hook %r failed for run %s", hook, run.pk)
