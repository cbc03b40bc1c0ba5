"""The worker side of a training run: claim, heartbeat, report progress, finish.

``training_run_execute(run_id, attempt)`` runs inside the training job (``rlhf.runs.tasks``), in a
worker process (``manage.py db_worker``), never in a web or websocket process. It claims the
run for its attempt, starts a heartbeat thread, and runs the engine as a child process
(``python -m rlhf.training <method> --events ...``, see ``rlhf.training.launch``) in a process
group of its own; a multi-process run is that child under ``accelerate launch``. The worker
never imports torch: its memory returns to its baseline after every run, and an out-of-memory
kill or a crash in a native library takes the child, never the worker and its other queues.

While the child runs the worker reads its events file (``EventTail``) into ``RunReporter``,
which buffers metric points and log lines and flushes them about once a second, and looks at
the fence: once a cancel was requested or the attempt lost its run, it SIGKILLs the child's
whole process group. A child that dies without an error report (SIGKILL from the kernel's
out-of-memory killer, a segfault) re-queues its run with the reason, or fails it once
``max_attempts`` are spent (``training_run_release_killed``).

Fencing: every write goes through ``AttemptFence.write``, an ``UPDATE ... WHERE id = %s AND
attempt = %s AND status = 'running'``. Once the run has been re-queued (its worker was
presumed dead) the attempt number moved on, the update matches no row, the fence closes, and
the child is killed before the worker reads another event. Each attempt also trains in its
own folder (``runs/<id>/attempt-<n>``), seeded with hard links to the checkpoints recorded by
earlier attempts (from the worker's own links in ``recorded-checkpoints/``, taken as each one
is recorded: the child prunes its ``checkpoints/``, a fenced-off one until it is killed), so
a lost attempt that is still running cannot touch the new one's files,
and only checkpoints whose manifest hash the database recorded are ever resumed (the child is
handed that list: ``trusted-checkpoints.json``). A worker killed outright leaves no orphan:
the child watches the worker's pid and kills its own group when it is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from rlhf.models import RunStatus, TrainingRun, TrainingRunMetric
from rlhf.runs.services import (
    json_safe,
    log_line,
    log_lines_append,
    run_dir,
    training_run_notify,
    training_run_release_killed,
    training_run_requeue_stale,
    training_run_succeeded,
)
from rlhf.training import checkpoints, launch
from rlhf.training.config import config_from_dict
from rlhf.training.progress import ProgressEvent
from rlhf.training.provenance import REPOSITORY_ROOT, code_version, library_versions, sha256_file

logger = logging.getLogger(__name__)

# Events after which the buffer is written at once (the rest wait for TANDEM_RUN_FLUSH_SECONDS).
FLUSH_NOW = ("start", "eval", "checkpoint", "log", "end")
SEEDED_CHECKPOINTS = 2  # newest recorded checkpoints linked into a new attempt's folder
PINNED_DIR = "recorded-checkpoints"  # the worker's links to the checkpoints it recorded
CHILD_POLL_SECONDS = 0.2  # how often the worker reads the child's events and the fence
PROBE_TIMEOUT_SECONDS = 300  # the device probe imports torch: seconds on a loaded CPU
LOG_TAIL_ON_DEATH = 15  # lines of the child's output quoted when it dies without a report


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def attempt_dir(run_id: int, attempt: int) -> Path:
    return run_dir(run_id) / f"attempt-{attempt}"


class AttemptFence:
    """Writes of one attempt, each conditioned on the attempt still owning the run."""

    def __init__(self, run_id: int, attempt: int):
        self.run_id = run_id
        self.attempt = attempt
        self.lost = False  # the run moved on to another attempt (or left 'running')
        self.cancel_requested = False

    def owned(self):
        return TrainingRun.objects.filter(
            pk=self.run_id, attempt=self.attempt, status=RunStatus.RUNNING
        )

    def write(self, **fields) -> bool:
        """One fenced UPDATE; returns False, and closes the fence, when nothing matched."""
        if self.lost:
            return False
        updated = self.owned().update(revision=F("revision") + 1, **fields)
        if not updated:
            self.lost = True
        return bool(updated)

    def beat(self) -> None:
        """Heartbeat (not a visible change: no revision bump) and look for a cancel."""
        if self.lost:
            return
        if not self.owned().update(heartbeat_at=timezone.now()):
            self.lost = True
            return
        if self.owned().filter(cancel_requested=True).exists():
            self.cancel_requested = True

    def should_stop(self) -> bool:
        return self.lost or self.cancel_requested


class Heartbeat(threading.Thread):
    """Beats every TANDEM_RUN_HEARTBEAT_SECONDS while the engine runs (steps may take longer
    than that, and loading a model or evaluating takes longer still)."""

    def __init__(self, fence: AttemptFence, interval: float):
        super().__init__(name=f"heartbeat-run-{fence.run_id}", daemon=True)
        self.fence = fence
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval) and not self.fence.lost:
                try:
                    self.fence.beat()
                except Exception:  # a database hiccup: try again at the next beat
                    logger.warning("heartbeat of run %s failed", self.fence.run_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return {k: v for k, v in out.items() if v == v and abs(v) != float("inf")}


def pinned_dir(run_id: int, attempt: int) -> Path:
    """The worker's own links to the checkpoints it recorded for an attempt."""
    return attempt_dir(run_id, attempt) / PINNED_DIR


def _pin_checkpoint(fence: AttemptFence, source: Path, manifest_sha256: str) -> Path | None:
    """Hard-link a checkpoint the child announced into the attempt's pinned folder, before it is
    recorded; None when the child already pruned it.

    The child prunes its own ``checkpoints/`` folder as it trains, and a fenced-off attempt
    trains on until the worker notices it lost the run: by then it may have pruned every
    checkpoint the run recorded. The pinned links are touched by the worker only, so each
    recorded checkpoint is still there for the next attempt to seed from."""
    target = pinned_dir(fence.run_id, fence.attempt) / source.name
    if checkpoints.is_complete(target, manifest_sha256):
        return target
    shutil.rmtree(target, ignore_errors=True)  # an older write of the same step
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _link_tree(source, target)
    except FileNotFoundError:  # pruned before (or while) it was linked
        shutil.rmtree(target.with_name(f".staging-link-{target.name}"), ignore_errors=True)
        return None
    if not checkpoints.is_complete(target, manifest_sha256):  # pruned while it was linked
        shutil.rmtree(target, ignore_errors=True)
        return None
    return target


def _unpin_superseded(fence: AttemptFence, recorded: list) -> None:
    """Once recorded, keep the pinned links of this attempt's newest SEEDED_CHECKPOINTS only."""
    folder = pinned_dir(fence.run_id, fence.attempt)
    if not folder.is_dir():
        return
    own = sorted(
        (c for c in recorded if c["attempt"] == fence.attempt and Path(c["path"]).parent == folder),
        key=lambda c: c["global_step"],
        reverse=True,
    )
    keep = {Path(c["path"]).name for c in own[:SEEDED_CHECKPOINTS]}
    newest = own[0]["global_step"] if own else -1
    for path in folder.iterdir():
        step = path.name.rpartition("-")[2]
        # unrecorded pins newer than the newest record may be recorded by the next flush
        if path.name not in keep and not (step.isdigit() and int(step) > newest):
            shutil.rmtree(path, ignore_errors=True)


class RunReporter:
    """The engine's ``progress`` callback: buffers points and log lines, flushes them fenced."""

    def __init__(self, fence: AttemptFence, *, log_tail: str, checkpoints: list):
        self.fence = fence
        self.log_tail = log_tail
        self.pending_lines: list[str] = []
        self.points: list[TrainingRunMetric] = []
        self.checkpoints = list(checkpoints)
        self.progress: dict = {}
        self.trim_after_step: int | None = None
        self.dirty = False
        self.last_flush = 0.0
        self.flush_seconds = settings.TANDEM_RUN_FLUSH_SECONDS

    def log(self, message: str) -> None:
        self.pending_lines.append(log_line(message, attempt=self.fence.attempt))
        self.dirty = True

    def _point(self, step: int, name: str, value: float, now) -> None:
        self.points.append(
            TrainingRunMetric(
                run_id=self.fence.run_id,
                attempt=self.fence.attempt,
                step=step,
                name=name[:100],
                value=value,
                recorded_at=now,
            )
        )

    def __call__(self, event) -> None:
        now = timezone.now()
        kind = event.kind
        if kind == "start":
            self.progress.update(step=event.step, total_steps=event.total_steps)
            if self.fence.attempt > 1:
                # Points an earlier attempt logged after the checkpoint this one resumed from
                # are replaced by what this attempt logs for the same steps.
                self.trim_after_step = event.step
            self.log(f"training started at step {event.step} of {event.total_steps}")
        elif kind == "step":
            values = _flatten(
                {**event.metrics, "loss": event.loss, "tokens_per_s": event.tokens_per_s}
            )
            for name, value in values.items():
                self._point(event.step, name, value, now)
            self.progress.update(
                step=event.step,
                total_steps=event.total_steps,
                loss=event.loss,
                tokens_per_s=event.tokens_per_s,
                eta_s=event.eta_s,
                elapsed_s=event.elapsed_s,
            )
            rate = f", {event.tokens_per_s:.0f} tokens/s" if event.tokens_per_s else ""
            loss = f" loss {event.loss:.4f}" if event.loss is not None else ""
            self.pending_lines.append(
                log_line(
                    f"step {event.step}/{event.total_steps}{loss}{rate}",
                    attempt=self.fence.attempt,
                )
            )
        elif kind == "eval":
            values = _flatten(event.metrics)
            for name, value in values.items():
                self._point(event.step, name, value, now)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(values.items())[:8])
            self.log(f"evaluation at step {event.step}: {shown}")
        elif kind == "checkpoint":
            info = event.checkpoint or {}
            name = Path(info["path"]).name
            step = int(info["global_step"])
            # Recorded as announced; the path is the worker's pinned link where it could take
            # one (a checkpoint read after the child pruned it stays on record, unresumable).
            pinned = None
            if not self.fence.lost:  # a fenced-off attempt records nothing more
                pinned = _pin_checkpoint(self.fence, Path(info["path"]), info["manifest_sha256"])
            self.checkpoints.append(
                {
                    "attempt": self.fence.attempt,
                    "global_step": step,
                    "manifest_sha256": info["manifest_sha256"],
                    "path": str(pinned or info["path"]),
                }
            )
            pruned = "" if pinned else ", pruned before the worker could keep it"
            self.log(f"checkpoint at step {step} ({name}{pruned})")
        elif kind == "log":
            self.log(event.message)
        elif kind == "end":
            self.progress.update(step=event.step, eta_s=0)
        self.dirty = True
        if kind in FLUSH_NOW or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, **extra_fields) -> bool:
        """Write the buffer (and ``extra_fields``) in one fenced transaction."""
        if not self.dirty and not extra_fields:
            return not self.fence.lost
        tail = log_lines_append(self.log_tail, *self.pending_lines)
        with transaction.atomic():
            ok = self.fence.write(
                progress=json_safe(self.progress),
                log_tail=tail,
                checkpoints=self.checkpoints,
                **extra_fields,
            )
            if ok:
                if self.trim_after_step is not None:
                    TrainingRunMetric.objects.filter(
                        run_id=self.fence.run_id,
                        attempt__lt=self.fence.attempt,
                        step__gt=self.trim_after_step,
                    ).delete()
                TrainingRunMetric.objects.bulk_create(self.points, batch_size=1000)
                training_run_notify(self.fence.run_id)
        if ok:
            self.log_tail = tail
            self.trim_after_step = None
            _unpin_superseded(self.fence, self.checkpoints)
        self.pending_lines.clear()
        self.points.clear()
        self.dirty = False
        self.last_flush = time.monotonic()
        return ok


# --------------------------------------------------------------------------- the job
def training_run_execute(*, run_id: int, attempt: int) -> str:
    """Run one attempt of a run to its end. Returns what happened: succeeded, failed,
    cancelled, lost (the attempt was fenced off), or skipped (not this attempt's turn)."""
    training_run_requeue_stale()
    try:
        run = _claim(run_id, attempt)
    except Unstartable as exc:
        return "failed" if _fail_unclaimed(run_id, attempt, str(exc)) else "skipped"
    if run is None:
        return "skipped"
    fence = AttemptFence(run_id, attempt)
    reporter = RunReporter(fence, log_tail=run.log_tail, checkpoints=run.checkpoints)
    heartbeat = Heartbeat(fence, settings.TANDEM_RUN_HEARTBEAT_SECONDS)
    heartbeat.start()
    try:
        return _train(run, fence, reporter)
    finally:
        heartbeat.stop()


def _claim(run_id: int, attempt: int) -> TrainingRun | None:
    from rlhf.runs.tasks import training_run_watchdog_job

    row = TrainingRun.objects.filter(pk=run_id).values("config", "attempt", "status").first()
    if row is None or row["attempt"] != attempt or row["status"] != RunStatus.QUEUED:
        return None
    config = row["config"]
    # Found before taking the row lock: the probe child imports torch, which takes seconds.
    # This worker consumed the run's only job: if it cannot start the run (it was asked for a
    # CUDA device this machine lacks, say), nothing else ever will, so the run must fail here
    # rather than stay queued forever.
    try:
        device = _probe_device(config)
        versions = library_versions()
    except Unstartable:
        raise
    except Exception as exc:
        raise Unstartable(f"{type(exc).__name__}: {exc}") from exc
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.attempt != attempt or run.status != RunStatus.QUEUED:
            return None
        now = timezone.now()
        run.status = RunStatus.RUNNING
        run.worker = worker_name()
        run.heartbeat_at = now
        run.started_at = run.started_at or now
        run.code_version = code_version()
        run.library_versions = versions
        run.device = device
        resume = max((c["global_step"] for c in run.checkpoints), default=None)
        run.attempts_log = [
            *run.attempts_log,
            {
                "attempt": attempt,
                "worker": run.worker,
                "started_at": now.isoformat(),
                "ended_at": None,
                "outcome": None,
                "resumed_from_step": resume,
                "world_size": _world_size(config),
                "pid": None,
            },
        ]
        run.log_tail = log_lines_append(
            run.log_tail,
            log_line(f"started on {run.worker} ({run.device})", attempt=attempt),
        )
        run.revision += 1
        run.save()
        watchdog_at = now + timedelta(seconds=settings.TANDEM_RUN_STALE_SECONDS + 1)
        transaction.on_commit(
            lambda: training_run_watchdog_job.using(run_after=watchdog_at).enqueue(
                run_id=run_id, attempt=attempt
            )
        )
        training_run_notify(run_id)
    return run


class Unstartable(Exception):
    """This worker cannot start the run at all (before claiming it)."""


def _fail_unclaimed(run_id: int, attempt: int, error: str) -> bool:
    """Fail a still-queued attempt that this worker could not start; False if it moved on."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.attempt != attempt or run.status != RunStatus.QUEUED:
            return False
        run.status = RunStatus.FAILED
        run.finished_at = timezone.now()
        run.error = error
        run.log_tail = log_lines_append(
            run.log_tail,
            log_line(f"could not start on {worker_name()}: {error}", attempt=attempt),
        )
        run.revision += 1
        run.save(update_fields=["status", "finished_at", "error", "log_tail", "revision"])
        training_run_notify(run_id)
    return True


def _world_size(config: dict) -> int:
    return int(config.get("num_processes", 1)) if config.get("distributed", "none") != "none" else 1


def _probe_device(config: dict) -> str:
    """The device this machine gives the run, found by a short child: the worker itself never
    imports torch, so its memory stays at its baseline between runs."""
    try:
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            launch.probe_command(config),
            cwd=REPOSITORY_ROOT,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Unstartable(f"the device probe took over {PROBE_TIMEOUT_SECONDS} s") from exc
    lines = done.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if "error" in answer:
        raise Unstartable(answer["error"])
    if done.returncode or "device" not in answer:
        raise Unstartable(f"the device probe failed: {done.stderr.strip()[-500:]}")
    return answer["device"]


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link ``source`` into ``target`` (a copy across file systems). Checkpoint files are
    never modified in place, so sharing their inodes between attempts is safe."""
    staging = target.with_name(f".staging-link-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    for path in sorted(source.rglob("*")):
        dest = staging / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, dest)
        except OSError:
            shutil.copy2(path, dest)
    os.replace(staging, target)


def _seed_checkpoints(run: TrainingRun, out_dir: Path, attempt: int) -> None:
    recorded = sorted(
        (c for c in run.checkpoints if c["attempt"] < attempt and Path(c["path"]).is_dir()),
        key=lambda c: c["global_step"],
        reverse=True,
    )
    for entry in recorded[:SEEDED_CHECKPOINTS]:
        source = Path(entry["path"])
        target = out_dir / "checkpoints" / source.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_tree(source, target)


class EventTail:
    """Reads the progress events a child appends to its events file, whole lines only."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[ProgressEvent]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        events = []
        for line in lines:
            try:
                events.append(ProgressEvent(**json.loads(line)))
            except (ValueError, TypeError):
                logger.warning("unreadable event line from %s: %r", self.path, line[:200])
        return events


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (the launched ranks, in sessions of their own,
    follow within a second: they watch the child, see launch.watch_parent)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)


def _kill_attempt_processes(token: str, timeout: float = 10.0) -> None:
    """SIGKILL every process that carries this attempt's token in its environment, until none
    is left. The ranks of a launched run sit in sessions of their own and would otherwise live
    until their watch notices (up to a second), long enough to write and prune checkpoints in
    the attempt folder that the next attempt is about to link from."""
    marker = f"{launch.ATTEMPT_ENV}={token}".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = False
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:  # gone, or not ours
                continue
            if marker in environ.split(b"\0"):
                found = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.05)
    logger.warning("processes of attempt token %s outlived %s s of SIGKILLs", token, timeout)


def _exit_reason(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -code == 9 else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code} without an error report"


def _output_tail(out_dir: Path) -> str:
    try:
        text = (out_dir / launch.LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-LOG_TAIL_ON_DEATH:])


def _start_child(run: TrainingRun, out_dir: Path, token: str) -> subprocess.Popen:
    for name in (launch.EVENTS_FILE, launch.RESULT_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for stale in out_dir.glob(launch.FAILURE_GLOB):
        stale.unlink()
    config_file = out_dir / "run-config.json"
    config_file.write_text(json.dumps(run.config))
    trusted_file = out_dir / "trusted-checkpoints.json"
    trusted_file.write_text(json.dumps(sorted({c["manifest_sha256"] for c in run.checkpoints})))
    command = launch.attempt_command(run.method, config_file, run.data_path, out_dir, trusted_file)
    env = {
        **os.environ,
        launch.WATCH_ENV: str(os.getpid()),
        launch.ATTEMPT_ENV: token,  # inherited by every process of the attempt
        "PYTHONUNBUFFERED": "1",
    }
    with open(out_dir / launch.LOG_FILE, "ab") as log:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            command,
            cwd=REPOSITORY_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one killpg ends it all
        )


def _record_pid(fence: AttemptFence, reporter: RunReporter, pid: int) -> None:
    history = list(
        TrainingRun.objects.filter(pk=fence.run_id).values_list("attempts_log", flat=True).first()
        or []
    )
    for entry in history:
        if entry.get("attempt") == fence.attempt:
            entry["pid"] = pid
    reporter.flush(attempts_log=history)


def _train(run: TrainingRun, fence: AttemptFence, reporter: RunReporter) -> str:
    """Run the attempt as a child process and follow it to its end."""
    out_dir = attempt_dir(run.pk, fence.attempt)
    try:
        config_from_dict(run.method, dict(run.config))  # a stored config that no longer loads
        out_dir.mkdir(parents=True, exist_ok=True)
        _seed_checkpoints(run, out_dir, fence.attempt)
        token = uuid.uuid4().hex
        child = _start_child(run, out_dir, token)
    except Exception as exc:
        logger.exception("run %s attempt %s could not start", run.pk, fence.attempt)
        return _failed(fence, reporter, f"{type(exc).__name__}: {exc}", "")
    world = _world_size(run.config)
    reporter.log(f"training process {child.pid} started ({world} process{'es' * (world > 1)})")
    _record_pid(fence, reporter, child.pid)
    events = EventTail(out_dir / launch.EVENTS_FILE)
    stopped = False
    try:
        while True:
            for event in events.read():
                reporter(event)
            code = child.poll()
            if code is not None:
                break
            if fence.should_stop():
                stopped = True
                _kill_group(child)
                code = child.wait()
                break
            time.sleep(CHILD_POLL_SECONDS)
    finally:
        _kill_group(child)  # whatever is left: dataloader workers, a launcher's agent
        child.wait()
        _kill_attempt_processes(token)  # launched ranks, in sessions of their own
    if not stopped:
        # Read last, once no process of the attempt is left: every checkpoint it published is
        # recorded, so the next attempt links the newest one (pruning took only older ones).
        for event in events.read():
            reporter(event)

    if fence.lost:
        reporter.flush()
        return "lost"
    if stopped:
        step = reporter.progress.get("step", 0)
        reporter.log(f"cancelled at step {step}: training process group killed")
        _finish(fence, reporter, RunStatus.CANCELLED, outcome="cancelled")
        return "cancelled"
    result_file = out_dir / launch.RESULT_FILE
    if code == 0 and result_file.is_file():
        return _succeeded(run, fence, reporter, json.loads(result_file.read_text()), out_dir)
    failures = sorted(out_dir.glob(launch.FAILURE_GLOB))
    if failures:
        failure = json.loads(failures[0].read_text())
        return _failed(fence, reporter, failure["error"], failure["traceback"])
    reason = _exit_reason(code)
    logger.warning("run %s attempt %s: training process %s", run.pk, fence.attempt, reason)
    reporter.log(f"training process {child.pid} {reason}")
    reporter.flush()
    return training_run_release_killed(
        run_id=run.pk,
        attempt=fence.attempt,
        reason=f"training process {reason}",
        output=_output_tail(out_dir),
    )


def _failed(fence: AttemptFence, reporter: RunReporter, error: str, trace: str) -> str:
    if fence.lost:
        return "lost"
    reporter.log(f"failed: {error}")
    details = f"{error}\n\n{trace}" if trace else error
    _finish(fence, reporter, RunStatus.FAILED, outcome="failed", error=details)
    return "failed"


def _succeeded(
    run: TrainingRun, fence: AttemptFence, reporter: RunReporter, result: dict, out_dir: Path
) -> str:
    artifacts = [
        {"path": a["path"], "sha256": a["sha256"], "bytes": a["bytes"]} for a in result["artifacts"]
    ] + _run_files(run.pk, fence.attempt, out_dir)
    reporter.log(
        f"succeeded at step {result['global_step']}: {len(result['artifacts'])} model files in "
        f"{Path(result['model_dir']).name}/"
    )
    ok = _finish(
        fence,
        reporter,
        RunStatus.SUCCEEDED,
        outcome="succeeded",
        result=json_safe(result),
        metrics=json_safe(result["metrics"]),
        artifact_dir=str(out_dir),
        artifacts=artifacts,
        library_versions=result["library_versions"],
    )
    if not ok:
        return "lost"
    _prune_earlier_checkpoints(run.pk, fence.attempt)
    return "succeeded"


def _run_files(run_id: int, attempt: int, out_dir: Path) -> list[dict]:
    """config.json and result.json from the engine, plus every metric point as metrics.jsonl."""
    rows = TrainingRunMetric.objects.filter(run_id=run_id).values_list(
        "attempt", "step", "name", "value"
    )
    with open(out_dir / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for a, step, name, value in rows.iterator(chunk_size=5000):
            fh.write(json.dumps({"attempt": a, "step": step, "name": name, "value": value}) + "\n")
    files = []
    for name in ("config.json", "result.json", "metrics.jsonl"):
        path = out_dir / name
        if path.is_file():
            files.append({"path": name, "sha256": sha256_file(path), "bytes": path.stat().st_size})
    return files


def _finish(fence: AttemptFence, reporter: RunReporter, status: str, *, outcome: str, **fields):
    """The attempt's last write: the final status, conditioned on the fence like every other."""
    now = timezone.now()
    attempts = TrainingRun.objects.filter(pk=fence.run_id).values_list("attempts_log", flat=True)
    history = list(attempts.first() or [])
    for entry in history:
        if entry.get("attempt") == fence.attempt:
            entry.update(ended_at=now.isoformat(), outcome=outcome)
    with transaction.atomic():
        ok = reporter.flush(status=status, finished_at=now, attempts_log=history, **fields)
        if ok and status == RunStatus.SUCCEEDED:
            transaction.on_commit(
                lambda: training_run_succeeded(TrainingRun.objects.get(pk=fence.run_id))
            )
    return ok


def _prune_earlier_checkpoints(run_id: int, attempt: int) -> None:
    """A succeeded run keeps its final attempt's checkpoints only; earlier attempts' folders
    held nothing else that the run still needs."""
    for earlier in range(1, attempt):
        shutil.rmtree(attempt_dir(run_id, earlier) / "checkpoints", ignore_errors=True)
        shutil.rmtree(pinned_dir(run_id, earlier), ignore_errors=True)
