"""The run's websocket: members receive committed progress; anyone else is refused."""

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from config.routing import websocket_urlpatterns
from rlhf.runs import services as run_services
from rlhf.runs.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from rlhf.runs.execution import AttemptFence, RunReporter, _claim
from rlhf.training.progress import ProgressEvent
from tests.rlhf.runs.conftest import run_async


@pytest.fixture
def run(project, engineer, snapshot, reward_config):
    return run_services.training_run_launch(
        project=project,
        created_by=engineer,
        method="reward",
        snapshot=snapshot,
        config=reward_config,
    )


def communicator(run_id, user):
    client = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run_id}/")
    client.scope["user"] = user
    return client


@pytest.mark.parametrize("who", ["outsider", "anonymous", "annotator", "missing run"])
def test_subscription_is_refused_to_anyone_but_members_who_may_read_runs(
    run, who, outsider, annotator
):
    user = {"outsider": outsider, "annotator": annotator}.get(who, AnonymousUser())
    run_id = run.pk + 1000 if who == "missing run" else run.pk

    async def scenario():
        client = communicator(run_id, user if who != "missing run" else run.created_by)
        connected, code = await client.connect()
        await client.disconnect()
        return connected, code

    connected, code = run_async(scenario)

    assert connected is False
    assert code == (CLOSE_FORBIDDEN if who == "annotator" else CLOSE_NOT_FOUND)


def test_a_member_receives_the_state_then_each_committed_write_of_the_worker(run, engineer):
    # given a member subscribed (no polling: only the worker's pushes can reach them)
    async def scenario():
        client = communicator(run.pk, engineer)
        connected, _ = await client.connect()
        assert connected
        first = await client.receive_json_from(timeout=10)

        # when the worker claims the run and reports two steps
        def work():
            _claim(run.pk, 1)
            reporter = RunReporter(AttemptFence(run.pk, 1), log_tail="", checkpoints=[])
            reporter(ProgressEvent(kind="start", step=0, total_steps=8))
            reporter(ProgressEvent(kind="step", step=1, total_steps=8, loss=0.69, eta_s=7.0))
            reporter(ProgressEvent(kind="step", step=2, total_steps=8, loss=0.5, eta_s=6.0))
            reporter.flush()

        from channels.db import database_sync_to_async

        await database_sync_to_async(work)()
        messages = []
        while not messages or messages[-1]["run"]["progress"].get("step") != 2:
            messages.append(await client.receive_json_from(timeout=10))
        assert await client.receive_nothing(timeout=0.5)
        await client.disconnect()
        return first, messages

    first, messages = run_async(scenario)

    # then the first message is the queued run, and the pushes carry the progress and points
    assert first["type"] == "run.update"
    assert first["run"]["status"] == "queued"
    assert first["points"] == []
    last = messages[-1]
    assert last["run"]["status"] == "running"
    assert last["run"]["progress"]["step"] == 2
    assert last["run"]["progress"]["eta_s"] == 6.0
    losses = [(p[2], p[3]) for m in messages for p in m["points"] if p[1] == "loss"]
    assert losses == [(1, 0.69), (2, 0.5)]
    assert any("step 2/8 loss 0.5000" in m.get("log_tail", "") for m in messages)
