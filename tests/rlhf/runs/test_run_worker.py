"""Real worker processes (``manage.py db_worker``) on PostgreSQL: a worker killed with SIGKILL
mid-training is detected and its run resumes; snapshot to reward model end to end, streamed."""

import signal

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from config.routing import websocket_urlpatterns
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric
from rlhf.runs import services as run_services
from rlhf.snapshots import services
from tests.rlhf.runs.conftest import run_async, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TERMINAL = ("succeeded", "failed", "cancelled")


def fetch(run):
    return TrainingRun.objects.get(pk=run.pk)


def loss_steps(run, attempt=None):
    points = TrainingRunMetric.objects.filter(run=run, name="loss")
    if attempt is not None:
        points = points.filter(attempt=attempt)
    return sorted(points.values_list("step", flat=True))


def redis_url() -> str | None:
    import os

    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except Exception:
        return None
    return url


def test_a_worker_killed_mid_training_is_detected_and_its_run_resumes_from_the_checkpoint(
    project, engineer, snapshot, reward_config, run_settings, workers
):
    # given a run being trained by a real worker process, past its first recorded checkpoint
    config = {**reward_config, "max_steps": 40, "checkpoint_every_steps": 3}
    run = run_services.training_run_launch(
        project=project, created_by=engineer, method="reward", snapshot=snapshot, config=config
    )
    first = workers(run_settings)
    wait_for(
        lambda: (
            (r := fetch(run)).checkpoints
            and r.progress.get("step", 0) > r.checkpoints[0]["global_step"]
        ),
        timeout=240,
        what=f"a checkpoint and a step after it (worker log: {workers.log})",
    )

    # when the worker is killed outright
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = fetch(run)
    assert (killed.status, killed.attempt) == (RunStatus.RUNNING, 1)
    assert killed.progress["step"] < 40
    resume_step = max(c["global_step"] for c in killed.checkpoints)

    # and a worker comes back (as a supervisor would restart it)
    workers(run_settings)
    wait_for(
        lambda: fetch(run).status in TERMINAL, timeout=300, what=f"the run to end ({workers.log})"
    )

    # then the missed heartbeats released attempt 1 and attempt 2 resumed from its checkpoint
    run = fetch(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 2
    assert [e["outcome"] for e in run.attempts_log] == ["lost", "succeeded"]
    assert "lost: no heartbeat" in run.log_tail
    assert run.result["resumed_from_step"] == resume_step
    assert run.result["global_step"] == 40
    assert loss_steps(run, attempt=2)[0] == resume_step + 1
    assert loss_steps(run) == list(range(1, 41))


def test_snapshot_to_reward_model_through_the_worker_with_progress_streamed(
    small_project, engineer, outsider, run_settings, workers, tiny_models, settings
):
    url = redis_url()
    if url:  # the worker's pushes cross processes through Redis: no polling at all
        host = {"address": url, "socket_timeout": None}
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [host]},
            }
        }
        settings.TANDEM_RUN_POLL_SECONDS = 0
    else:  # the in-process layer cannot hear the worker: the consumer polls the revision
        settings.TANDEM_RUN_POLL_SECONDS = 0.3
    workers(run_settings, queues="snapshots,training")

    # given a snapshot of 40 HH pairs, built by the worker
    snapshot = services.snapshot_create(project=small_project, created_by=engineer, name="hh40")
    wait_for(
        lambda: (
            DatasetSnapshot.objects.get(pk=snapshot.pk).status
            in (SnapshotStatus.READY, SnapshotStatus.FAILED)
        ),
        timeout=240,
        what="the snapshot",
    )
    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.READY, snapshot.error

    # when a reward-model run is launched on it and watched over the websocket
    run = run_services.training_run_launch(
        project=small_project,
        created_by=engineer,
        method="reward",
        snapshot=snapshot,
        config={
            "backbone": "encoder",
            "base_model": str(tiny_models["encoder"]),
            "max_steps": 6,
            "per_device_batch_size": 2,
            "checkpoint_every_steps": 3,
            "max_length": 64,
        },
    )

    async def watch(user):
        client = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run.pk}/")
        client.scope["user"] = user
        connected, code = await client.connect()
        if not connected:
            return connected, code
        messages = [await client.receive_json_from(timeout=240)]
        while messages[-1]["run"]["status"] not in TERMINAL:
            messages.append(await client.receive_json_from(timeout=240))
        await client.disconnect()
        return True, messages

    refused, code = run_async(watch, outsider)
    connected, messages = run_async(watch, engineer)
    assert connected

    # then the run succeeded, its metrics are stored, and they were streamed while it ran
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.dataset_snapshot_id == snapshot.pk
    assert run.data_path == snapshot.export_path
    assert loss_steps(run) == [1, 2, 3, 4, 5, 6]
    assert any(a["path"] == "model/model.safetensors" for a in run.artifacts)
    streamed = [p for m in messages for p in m["points"] if p[1] == "loss"]
    assert [p[2] for p in streamed] == [1, 2, 3, 4, 5, 6]
    assert any(
        m["run"]["status"] == "running" and m["run"]["progress"].get("step") for m in messages
    )
    assert messages[-1]["run"]["status"] == "succeeded"
    # and someone from another project was refused the subscription
    assert (refused, code) == (False, 4404)
