"""A training worker's memory across runs: does it return to its baseline after each one?

    python bench/worker_memory.py --runs 5

What it does:
1. makes a scratch platform in a temporary folder: a migrated SQLite database (or the
   PostgreSQL database at ``--database-url``, already migrated), an artifact root, a project
   and a ready snapshot whose data is the first ``--pairs`` pairs of ``hh_harmless_dev.jsonl``
   (read through ``bench/shared_data.py``; ``--data`` names another HH-RLHF file);
2. starts one real worker (``manage.py db_worker --queue-name training``), waits until it has
   settled, and reads its resident memory: ``worker_rss_mb_before``;
3. launches ``--runs`` small reward-model runs (the packaged all-MiniLM-L6-v2 encoder,
   ``--steps`` optimizer steps of 8 pairs of at most 128 tokens) one after the other through
   that worker,
   sampling every 0.2 s the resident memory of the worker's descendants (the attempt's
   training processes): ``child_peak_rss_mb`` is the largest sum seen;
4. once every run has ended, reads the worker's memory again: ``worker_rss_mb_after``.

Prints one line per run, then as its last line one JSON object:
``{runs, worker_rss_mb_before, worker_rss_mb_after, child_peak_rss_mb}``.
Target: ``worker_rss_mb_after <= worker_rss_mb_before + 100``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.shared_data import shared_data  # noqa: E402

MB = 1024 * 1024
TERMINAL = ("succeeded", "failed", "cancelled")


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


def descendants_rss_mb(process: psutil.Process) -> float:
    total = 0.0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # ended between the listing and the reading
            total += child.memory_info().rss
    return total / MB


def settle(process: psutil.Process, seconds: float = 3.0, timeout: float = 120.0) -> float:
    """The worker's RSS once it stopped changing by more than 1 MB over ``seconds``."""
    deadline = time.monotonic() + timeout
    last = rss_mb(process)
    while time.monotonic() < deadline:
        time.sleep(seconds)
        now = rss_mb(process)
        if abs(now - last) < 1.0:
            return now
        last = now
    return last


def prepare(env: dict, scratch: Path, data: Path, pairs: int) -> int:
    """Migrate (SQLite), then create a project and a ready snapshot; returns the snapshot id."""
    if env["DATABASE_URL"].startswith("sqlite"):
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=REPO,
            env=env,
            check=True,
        )
    rows = []
    with open(data, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(line)
            if len(rows) >= pairs:
                break
    export = scratch / "hh.jsonl"
    export.write_text("".join(rows), encoding="utf-8")
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from annotation import services as annotation_services
    from rlhf.models import DatasetSnapshot, SnapshotStatus

    user = get_user_model().objects.create_user(f"bench-{os.getpid()}", password="x")
    project = annotation_services.project_create(name="worker memory", created_by=user, overlap=1)
    snapshot = DatasetSnapshot.objects.create(
        project=project,
        name="hh",
        created_by=user,
        status=SnapshotStatus.READY,
        max_label_id=0,
        config={},
        export_path=str(export),
        row_counts={"preference": {"train": len(rows), "validation": 0, "test": 0}},
    )
    return snapshot.pk


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run")
    parser.add_argument("--pairs", type=int, default=64, help="HH pairs in the snapshot")
    parser.add_argument("--data", default=str(shared_data("hh_harmless_dev.jsonl")))
    parser.add_argument("--database-url", default="", help="a migrated PostgreSQL database")
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        raise SystemExit(f"{data} not found: set TANDEM_SHARED_DATA or pass --data")

    scratch = Path(tempfile.mkdtemp(prefix="tandem-worker-memory-"))
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url or f"sqlite:///{scratch / 'db.sqlite3'}",
        "TANDEM_ARTIFACT_ROOT": str(scratch / "artifacts"),
        "TANDEM_LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "0",
        "TANDEM_SNAPSHOT_WORKERS": "0",
    }
    env.pop("REDIS_URL", None)  # the in-process channel layer: nobody watches these runs
    snapshot_id = prepare(env, scratch, data, args.pairs)

    from django.contrib.auth import get_user_model

    from rlhf.models import DatasetSnapshot, TrainingRun
    from rlhf.runs.services import training_run_launch

    log = open(scratch / "worker.log", "ab")  # noqa: SIM115 (closed below)
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "--queue-name", "training", "--no-reload",
         "--interval", "0.2", "--no-startup-delay"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    process = psutil.Process(worker.pid)
    try:
        before = settle(process)
        peak = 0.0
        snapshot = DatasetSnapshot.objects.get(pk=snapshot_id)
        user = get_user_model().objects.get(pk=snapshot.created_by_id)
        for number in range(1, args.runs + 1):
            run = training_run_launch(
                project=snapshot.project,
                created_by=user,
                method="reward",
                snapshot=snapshot,
                name=f"memory {number}",
                config={
                    "backbone": "encoder",
                    "base_model": "",
                    "max_steps": args.steps,
                    "per_device_batch_size": 8,
                    "max_length": 128,
                    "checkpoint_every_steps": 0,
                    "max_eval_examples": 32,
                },
            )
            started = time.monotonic()
            while True:
                status = TrainingRun.objects.filter(pk=run.pk).values_list("status", flat=True)[0]
                if status in TERMINAL:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker died: see {scratch / 'worker.log'}")
                peak = max(peak, descendants_rss_mb(process))
                time.sleep(0.2)
            run.refresh_from_db()
            if status != "succeeded":
                raise SystemExit(f"run {run.pk} {status}: {run.error[:2000]}")
            print(
                f"run {number}: {status} in {time.monotonic() - started:.0f} s, worker "
                f"{rss_mb(process):.0f} MB, training processes peak so far {peak:.0f} MB",
                flush=True,
            )
        after = settle(process)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
    figures = {
        "runs": args.runs,
        "worker_rss_mb_before": round(before, 1),
        "worker_rss_mb_after": round(after, 1),
        "child_peak_rss_mb": round(peak, 1),
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
