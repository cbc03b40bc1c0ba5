"""The serving path on the real engine: ``transformers serve --continuous-batching`` started by
the supervisor for a tiny random model, asked through the gateway (streamed and whole).

The other serving tests use a stand-in engine process (``fake_engine.py``) so that they run in
seconds; this one catches what only the real engine can break: its command line, its health
route, its OpenAI-compatible answers and usage counts. Starting it takes 30-90 s on a small CPU.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import connection
from django.test import AsyncClient, Client

from annotation import services as annotation_services
from annotation.roles import Role
from models_registry.serving.engines import engine_available
from models_registry.serving.models import EngineStatus, ServedResponse, ServingEngine
from models_registry.serving.supervisor import ServeConfig, Supervisor

from .test_serving import sse_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_engine(project, base_version, tmp_path):
    assert engine_available("transformers") is None, engine_available("transformers")
    supervisor = Supervisor(
        ServeConfig(
            project_id=project.pk,
            alias="champion",
            engine="transformers",
            device="cpu",
            kv_cache_tokens=1024,
            max_batch_tokens=256,
            poll_s=0.2,
            drain_grace_s=0.5,
            log_dir=tmp_path,
        )
    )
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                supervisor.step_logged()
                time.sleep(0.2)
        finally:
            supervisor.stop_all()
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        engine = ServingEngine.objects.filter(project=project).order_by("-id").first()
        if engine is not None and engine.status == EngineStatus.READY:
            break
        if engine is not None and engine.status == EngineStatus.FAILED:
            logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
            pytest.fail(f"the engine failed to start: {engine.error}\n{logs}")
        time.sleep(0.5)
    else:
        logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*.log"))
        pytest.fail(f"the engine was not ready in 300 s\n{logs}")
    yield engine
    stop.set()
    thread.join(timeout=120)


def test_the_real_engine_answers_through_the_gateway_streamed_and_whole(
    project, member, real_engine
):
    user = member(Role.ANNOTATOR, "app-owner")
    key = annotation_services.api_token_create(user=user, name="web app", scope="serve").secret
    body = {"max_tokens": 8, "temperature": 0}

    whole = Client().post(
        f"/gateway/{project.pk}/v1/chat/completions",
        {"model": "champion", "messages": [{"role": "user", "content": "Hi"}], **body},
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert whole.status_code == 200, whole.content[:500]
    answer = whole.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] >= 1

    async def stream():
        response = await AsyncClient().post(
            f"/gateway/{project.pk}/v1/chat/completions",
            {"model": "champion", "messages": [{"role": "user", "content": "Hi"}], **body,
             "stream": True},
            content_type="application/json",
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        chunks = b"".join([chunk async for chunk in response.streaming_content])
        return response.status_code, sse_events(chunks), chunks

    status, events, raw = asyncio.run(stream())
    assert status == 200, raw[:500]
    finishes = [c.get("finish_reason") for e in events for c in e.get("choices", [])]
    assert finishes[-1] in ("stop", "length"), raw[-800:]

    records = list(ServedResponse.objects.order_by("id"))
    assert [(r.status, r.streamed, r.engine_id) for r in records] == [
        ("ok", False, real_engine.pk),
        ("ok", True, real_engine.pk),
    ]
    assert records[0].completion_tokens == answer["usage"]["completion_tokens"]
    assert records[1].completion_tokens >= 1  # the engine's own count, from its last chunk
    assert records[1].ttft_ms > 0
