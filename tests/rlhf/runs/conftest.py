"""Fixtures for training-run tests: tiny random models, a hand-made export, fast heartbeats."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections

from annotation import services as annotation_services
from annotation.roles import Role
from rlhf.models import DatasetSnapshot, SnapshotStatus

REPO = Path(__file__).resolve().parents[3]
DB_TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "training", "generation", "snapshots"],
    }
}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from rlhf.training.base_models import build_tiny_causal_lm, build_tiny_encoder

    root = tmp_path_factory.mktemp("models")
    return {
        "root": root,
        "encoder": build_tiny_encoder(root / "encoder"),
        "lm": build_tiny_causal_lm(root / "lm"),
    }


@pytest.fixture
def run_settings(settings, tmp_path, tiny_models):
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_MODEL_ROOTS = [tiny_models["root"], tmp_path / "artifacts"]
    settings.TANDEM_RUN_HEARTBEAT_SECONDS = 0.2
    settings.TANDEM_RUN_STALE_SECONDS = 3
    settings.TANDEM_RUN_FLUSH_SECONDS = 0.2
    settings.TANDEM_RUN_POLL_SECONDS = 0
    settings.TASKS = DB_TASKS
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return settings


def preference_rows(count: int, offset: int = 0) -> list[dict]:
    return [
        {
            "prompt": [
                {"role": "user", "content": f"Question {i}: how do I bake bread number {i}?"}
            ],
            "chosen": [
                {"role": "assistant", "content": f"Mix flour, water and salt; bake {i} min."}
            ],
            "rejected": [{"role": "assistant", "content": f"No idea {i}. Ask someone else."}],
        }
        for i in range(offset, offset + count)
    ]


def write_export(folder: Path, *, train: int = 40, validation: int = 8) -> Path:
    (folder / "preference").mkdir(parents=True, exist_ok=True)
    splits = {"train": preference_rows(train), "validation": preference_rows(validation, 1000)}
    for split, rows in splits.items():
        lines = "\n".join(json.dumps(row) for row in rows)
        (folder / "preference" / f"{split}.jsonl").write_text(lines + "\n")
    manifest = {"format": "tandem-export/1", "shapes": {"preference": {"train": train}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def snapshot(project, engineer, run_settings, tmp_path):
    """A ready snapshot whose canonical export is a small hand-written preference set."""
    export = write_export(tmp_path / "export")
    return DatasetSnapshot.objects.create(
        project=project,
        name="bread",
        created_by=engineer,
        status=SnapshotStatus.READY,
        max_label_id=0,
        config={},
        export_path=str(export),
        row_counts={"preference": {"train": 40, "validation": 8, "test": 0}},
    )


@pytest.fixture
def reward_config(tiny_models):
    """A few-second reward-model run on the tiny encoder."""
    return {
        "backbone": "encoder",
        "base_model": str(tiny_models["encoder"]),
        "max_steps": 8,
        "per_device_batch_size": 2,
        "checkpoint_every_steps": 2,
        "max_length": 64,
        "max_eval_examples": 8,
        "learning_rate": 1e-3,
    }


@pytest.fixture
def outsider(make_user, project):
    """A member of another project only."""
    user = make_user("oscar-outsider")
    other = annotation_services.project_create(name="Other", created_by=user, overlap=1)
    annotation_services.membership_set(project=other, user=user, role=Role.ENGINEER)
    return user


@pytest.fixture
def annotator(make_user, project):
    user = make_user("ann-annotator")
    annotation_services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    return user


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_worker(settings, log_path: Path, queues: str = "training") -> subprocess.Popen:
    """A real ``manage.py db_worker`` on the training queue, against the test database."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "TANDEM_ARTIFACT_ROOT": str(settings.TANDEM_ARTIFACT_ROOT),
        "TANDEM_MODEL_ROOTS": os.pathsep.join(str(p) for p in settings.TANDEM_MODEL_ROOTS),
        "TANDEM_RUN_HEARTBEAT_SECONDS": str(settings.TANDEM_RUN_HEARTBEAT_SECONDS),
        "TANDEM_RUN_STALE_SECONDS": str(settings.TANDEM_RUN_STALE_SECONDS),
        "TANDEM_RUN_FLUSH_SECONDS": str(settings.TANDEM_RUN_FLUSH_SECONDS),
        "TANDEM_LOG_LEVEL": "WARNING",
        "TANDEM_SNAPSHOT_WORKERS": "0",
    }
    if settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        env["REDIS_URL"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    else:
        env.pop("REDIS_URL", None)
    command = [sys.executable, "manage.py", "db_worker", "--queue-name", queues]
    command += ["--no-reload", "--interval", "0.2", "--no-startup-delay", "--verbosity", "0"]
    log = open(log_path, "ab")  # noqa: SIM115 (closed with the process by the caller's fixture)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def workers(tmp_path):
    """Starts worker processes and kills whatever is left of them at the end."""
    started: list[subprocess.Popen] = []

    def start(settings, queues="training"):
        process = start_worker(settings, tmp_path / "worker.log", queues)
        started.append(process)
        return process

    start.log = tmp_path / "worker.log"
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def run_async(function, *args):
    """``async_to_sync(function)(*args)`` in a thread of its own.

    A browser test earlier in the session leaves Playwright's event loop in the main thread,
    and async_to_sync refuses a thread whose loop is running.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = async_to_sync(function)(*args)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
