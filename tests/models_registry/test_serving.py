"""The gateway and the serving supervisor.

The engine here is ``fake_engine.py``, a stand-in OpenAI-compatible HTTP server in its own
process (the real ``transformers serve`` takes ~40 s to start on this machine; it is driven by
``bench/serve.py``). What is real: the supervisor (processes, health probes, the switch and
the drain), the gateway under Django's ASGI handler, the database, the tokens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import AsyncClient, Client

from annotation import services as annotation_services
from annotation.models import Label
from annotation.roles import Role
from models_registry import services as registry
from models_registry.serving import engines
from models_registry.serving.models import (
    EngineStatus,
    ServedFeedback,
    ServedResponse,
    ServingEngine,
)
from models_registry.serving.services import serving_settings_update
from models_registry.serving.supervisor import ServeConfig, Supervisor

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fake_engines(monkeypatch):
    def command(*, kind, folder, host, port, served_name, **_sizes):
        argv = [sys.executable, str(FAKE_ENGINE), folder, "--port", str(port), "--host", host,
                "--name", served_name, "--chunks", "6", "--delay", "0.1",
                "--startup", "1.0"]  # fmt: skip
        return argv, served_name

    monkeypatch.setattr(engines, "engine_command", command)
    monkeypatch.setattr(engines, "engine_available", lambda kind: None)


@pytest.fixture
def supervised(fake_engines, project, tmp_path):
    started = []

    def start(**config):
        supervisor = Supervisor(
            ServeConfig(
                project_id=project.pk,
                engine="transformers",
                poll_s=0.05,
                drain_grace_s=0.5,
                log_dir=tmp_path,
                **config,
            )
        )
        stop = threading.Event()

        def loop():
            try:
                while not stop.is_set():
                    supervisor.step_logged()
                    time.sleep(0.05)
            finally:
                supervisor.stop_all()
                connection.close()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        started.append((stop, thread))
        return supervisor

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=60)


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def ready_version_ids(project) -> set[int]:
    return set(
        ServingEngine.objects.filter(project=project, status=EngineStatus.READY).values_list(
            "version_id", flat=True
        )
    )


@pytest.fixture
def key(project, member):
    """A ``serve`` API key of a project member."""
    user = member(Role.ANNOTATOR, "app-owner")
    return annotation_services.api_token_create(user=user, name="web app", scope="serve").secret


@pytest.fixture
def champion(project, base_version):
    """The registered base model: the project's first champion."""
    assert project.model_aliases.get(name="champion").version == base_version
    return base_version


def url(project, what):
    return f"/gateway/{project.pk}/v1/{what}"


def chat(client, project, key, *, stream=False, model="champion", content="Hi"):
    return client.post(
        url(project, "chat/completions"),
        {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream},
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


def sse_events(body: bytes) -> list[dict]:
    return [
        json.loads(line[6:])
        for line in body.decode().splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def read_stream(client, project, key, content="Hi") -> tuple[int, str, str]:
    response = await chat(client, project, key, stream=True, content=content)
    if response.status_code != 200:
        return response.status_code, "", ""
    body = b"".join([chunk async for chunk in response.streaming_content])
    events = sse_events(body)
    text = "".join(
        (c.get("delta") or {}).get("content") or "" for e in events for c in e.get("choices", [])
    )
    finished = any(c.get("finish_reason") for e in events for c in e.get("choices", []))
    return (200 if finished else 599), text, response["X-Tandem-Response-Id"]


# ----------------------------------------------------------------------------- the gate


def test_the_gateway_takes_only_a_live_serve_or_admin_key_of_a_member(
    project, other_project, member, key, champion
):
    client = Client()
    reader = annotation_services.api_token_create(
        user=member(Role.ENGINEER, "reader"), name="r", scope="read"
    ).secret
    outsider = member(Role.ADMIN, "outsider", target=other_project)
    foreign_key = annotation_services.api_token_create(
        user=outsider, name="f", scope="serve"
    ).secret
    before = ServedResponse.objects.count()

    assert chat(client, project, "").status_code == 401
    assert chat(client, project, "tdm_not-a-key").status_code == 401
    refused = chat(client, project, reader)
    assert refused.status_code == 403
    assert refused.json()["error"] == "permission_denied"
    assert chat(client, project, foreign_key).status_code == 404
    session = Client()
    session.force_login(outsider)
    assert session.get(url(other_project, "models")).status_code == 403  # a session: no
    # A serve key calls nothing but the gateway.
    api = client.get(f"/api/projects/{project.pk}/", HTTP_AUTHORIZATION=f"Token {key}")
    assert api.status_code == 403
    assert ServedResponse.objects.count() == before


def test_bad_input_is_a_400_naming_the_field_and_an_unknown_model_a_404(project, key, champion):
    client = Client()
    bad = client.post(
        url(project, "chat/completions"), {"model": "champion", "messages": "hi"},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip
    assert bad.status_code == 400
    assert list(bad.json()["fields"]) == ["messages"]
    unknown = chat(client, project, key, model="no-such-model")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_model"
    nothing = chat(client, project, key)  # champion exists, no engine runs
    assert nothing.status_code == 503
    assert nothing["Retry-After"] == "5"
    assert ServedResponse.objects.count() == 0


# ----------------------------------------------------------------------------- serving


def test_usage_records_and_the_per_key_rate_limit(project, key, champion, supervised):
    supervised(alias="champion")
    wait_for(lambda: champion.pk in ready_version_ids(project))
    serving_settings_update(project=project, requests_per_minute=2)
    client = Client()

    whole = chat(client, project, key)
    assert whole.status_code == 200
    body = whole.json()
    assert body["model"] == "tiny-base-v1"
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["content"].startswith("tiny-base-v1 says 0.")

    async def one_stream():
        return await read_stream(AsyncClient(), project, key)

    status, text, response_id = asyncio.run(one_stream())
    assert status == 200
    assert text.startswith("tiny-base-v1 says 0.")

    listed = client.get(url(project, "models"), headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    assert {m["id"]: m["ready"] for m in listed.json()["data"]} == {
        "champion": True,
        "tiny-base-v1": True,
    }

    limited = chat(client, project, key)
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1

    records = list(ServedResponse.objects.order_by("id"))
    assert [
        (r.status, r.streamed, r.version_id, r.prompt_tokens, r.completion_tokens) for r in records
    ] == [("ok", False, champion.pk, 7, 6), ("ok", True, champion.pk, 7, 6)]
    assert records[1].response_id == response_id
    assert all(r.latency_ms > 0 and r.token.name == "web app" for r in records)
    assert records[1].ttft_ms > 0
    assert records[0].messages == []
    assert records[0].answer == ""


def test_concurrent_requests_cannot_overshoot_the_rate_limit(
    project, key, champion, supervised, monkeypatch
):
    # (before the fix all six passed the check: each counted the records of the others before
    # any was written, so a key could go past its limit by its number of requests in flight)
    from models_registry.serving import gateway

    supervised(alias="champion")
    wait_for(lambda: champion.pk in ready_version_ids(project))
    serving_settings_update(project=project, requests_per_minute=2)
    route = gateway._route

    def slow_route(*args):
        time.sleep(0.5)  # every request is past the key check before any is recorded
        return route(*args)

    monkeypatch.setattr(gateway, "_route", slow_route)
    start = threading.Barrier(6)
    statuses = []

    def one():
        client = Client()
        start.wait()
        statuses.append(chat(client, project, key).status_code)
        connection.close()

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    assert ServedResponse.objects.count() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/environ")
def test_the_supervisor_starts_a_cpu_engine_with_the_engines_environment(
    project, champion, supervised
):
    """The engine's process gets ``engine_environment`` (on a CPU: SDPA reads the grouped
    key/value heads) on top of the serving process's own environment."""
    supervised(alias="champion", device="cpu")
    wait_for(lambda: champion.pk in ready_version_ids(project))
    engine = ServingEngine.objects.get(project=project, status=EngineStatus.READY)
    environ = Path(f"/proc/{engine.pid}/environ").read_bytes().split(b"\0")
    assert b"TRANSFORMERS_SDPA_FORCE_GQA=1" in environ
    assert b"DJANGO_SETTINGS_MODULE=config.settings" in environ  # and its own


def test_an_alias_move_switches_engines_without_a_failed_request(
    project, key, champion, candidate, supervised, admin_user
):
    """Given streams running on v1, when the champion moves to v2, then v2 loads while v1
    still answers; requests switch once v2 is healthy; v1's streams finish on v1; v1 stops
    once drained. A rollback switches back the same way."""
    registry.model_version_transition(version=candidate, actor=admin_user, to_state="in_review")
    registry.model_version_transition(
        version=candidate, actor=admin_user, to_state="approved", reason="ok"
    )
    supervised(alias="champion")
    wait_for(lambda: champion.pk in ready_version_ids(project))

    async def traffic(until):
        results = []

        async def client_loop(n):
            client = AsyncClient()
            await asyncio.sleep(0.15 * n)  # staggered: some stream is always mid-answer
            while not until():
                results.append(await read_stream(client, project, key, content=f"c{n}"))

        await asyncio.gather(*(client_loop(n) for n in range(4)))
        return results

    def move(version, reason, rollback=False):
        if rollback:
            registry.alias_rollback(
                project=project, name="champion", actor=admin_user, reason=reason
            )
        else:
            registry.alias_set(project=project, name="champion", version=version,
                               actor=admin_user, reason=reason, override=False)  # fmt: skip

    def stopped(version):
        return ServingEngine.objects.filter(
            version=version, status=EngineStatus.STOPPED
        ).exists() and ready_version_ids(project) == {
            ({champion.pk, candidate.pk} - {version.pk}).pop()
        }

    for version, back, previous in ((candidate, False, champion), (champion, True, candidate)):
        done = threading.Event()

        def move_then_watch(version=version, back=back, previous=previous, done=done):
            time.sleep(0.5)
            move(version, "swap", back)
            wait_for(lambda: stopped(previous))
            done.set()
            connection.close()

        mover = threading.Thread(target=move_then_watch)
        mover.start()
        results = asyncio.run(traffic(done.is_set))
        mover.join()
        assert [r for r in results if r[0] != 200] == []  # no failed request
        assert len(results) > 8
        speakers = {r[1].split(" says")[0] for r in results}
        assert speakers == {"tiny-base-v1", "tiny-dpo-v1"}  # both answered during the swap
        # every answer is whole, from one engine
        for _status, text, _id in results:
            assert text.count(" says ") == 6
            assert len({part.split(" says")[0] for part in text.split(". ") if part}) == 1
    assert not ServedResponse.objects.exclude(status="ok").exists()
    assert ServingEngine.objects.filter(version=champion, status=EngineStatus.READY).count() == 1


def test_canary_split_and_shadow(project, key, champion, candidate, supervised, admin_user):
    registry.model_version_transition(version=candidate, actor=admin_user, to_state="in_review")
    registry.model_version_transition(
        version=candidate, actor=admin_user, to_state="approved", reason="ok"
    )
    serving_settings_update(
        project=project, canary_version=candidate, canary_mode="split", canary_share=1.0
    )
    supervised(alias="champion")
    wait_for(lambda: ready_version_ids(project) == {champion.pk, candidate.pk})
    client = Client()
    split = chat(client, project, key).json()
    assert split["model"] == "tiny-dpo-v1"
    serving_settings_update(project=project, canary_mode="shadow")
    shadowed = chat(client, project, key).json()
    assert shadowed["model"] == "tiny-base-v1"  # the shadow's answer is never returned
    primary = ServedResponse.objects.get(response_id=shadowed["id"])
    wait_for(lambda: ServedResponse.objects.filter(shadow_of=primary, status="ok").exists())
    shadow = ServedResponse.objects.get(shadow_of=primary)
    assert (shadow.route, shadow.version_id) == ("shadow", candidate.pk)
    assert ServedResponse.objects.get(response_id=split["id"]).route == "split"


# ----------------------------------------------------------------------------- the loop


def test_approve_serve_feedback_then_the_next_snapshot_holds_the_served_labels(
    project, key, champion, candidate, supervised, reviewer, add_reviews
):
    """approve -> serve -> side-by-side answers -> preference feedback -> snapshot."""
    from rlhf.snapshots.services import snapshot_build, snapshot_create

    serving_settings_update(project=project, learn_from_traffic=True)
    supervised(alias="champion")
    wait_for(lambda: champion.pk in ready_version_ids(project))
    # given a candidate approved by review: it becomes champion, and is served
    add_reviews(candidate, champion, "AAAA")
    registry.model_version_transition(version=candidate, actor=reviewer, to_state="in_review")
    registry.model_version_approve(version=candidate, actor=reviewer, reason="wins its review")
    wait_for(lambda: candidate.pk in ready_version_ids(project))
    # and the former champion pinned beside it (serve --version), for side-by-side answers
    supervised(version_id=champion.pk)
    wait_for(lambda: ready_version_ids(project) == {champion.pk, candidate.pk})
    client = Client()
    prompt = "My email is jane.doe@example.com; what should I cook tonight?"
    first = chat(client, project, key, content=prompt).json()
    second = chat(client, project, key, content=prompt, model="tiny-base-v1").json()
    assert (first["model"], second["model"]) == ("tiny-dpo-v1", "tiny-base-v1")

    # when the client prefers the champion's answer
    sent = client.post(
        url(project, "feedback"), {"chosen_id": first["id"], "rejected_id": second["id"]},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip
    assert sent.status_code == 201
    assert sent.json()["learned"] is True
    thumbs = client.post(
        url(project, "feedback"), {"response_id": first["id"], "rating": "sideways"},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip
    assert thumbs.status_code == 400
    assert list(thumbs.json()["fields"]) == ["rating"]

    up = client.post(
        url(project, "feedback"), {"response_id": second["id"], "rating": "up"},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip
    assert up.status_code == 201
    assert up.json() == {"id": up.json()["id"], "kind": "thumbs", "learned": False}
    assert ServedFeedback.objects.get(pk=up.json()["id"]).thumbs_up is True
    # with consent, a thumbs' conversation is kept as the project's prompt and response
    served_prompt = project.prompts.get(source="served")  # one: the same messages twice
    assert set(served_prompt.responses.values_list("model_name", flat=True)) == {
        candidate.response_model_name,
        champion.response_model_name,
    }

    # then the label is the served source's, PII-scrubbed, and the snapshot counts it apart
    label = Label.objects.get(pk=ServedFeedback.objects.get(pk=sent.json()["id"]).learned_label_id)
    assert label.annotator.username == "external:served-web-app"
    assert "jane.doe@example.com" not in label.task.prompt.messages[0]["content"]
    assert label.payload["winner"] in set(label.task.items.values_list("response_id", flat=True))
    winner = label.task.items.get(response_id=label.payload["winner"]).response
    assert winner.model_name == candidate.response_model_name
    snapshot = snapshot_create(project=project, created_by=reviewer, enqueue=False)
    snapshot = snapshot_build(snapshot_id=snapshot.pk, workers=0)
    assert snapshot.report["label_sources"]["served"] == 1
    assert snapshot.report["label_sources"]["annotators"] == 4  # the review labels
    assert "Served feedback (served-web-app): 1" in snapshot.data_card


# ----------------------------------------------------------------------------- thumbs


def thumbs(client, project, key, response_id, rating):
    return client.post(
        url(project, "feedback"), {"response_id": response_id, "rating": rating},
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip


def test_an_up_and_a_down_on_two_answers_to_one_conversation_are_a_preference_label(
    project, key, champion, candidate, supervised
):
    # (before, thumbs were stored and never became a label: "learned" stayed False)
    serving_settings_update(project=project, learn_from_traffic=True)
    supervised(alias="champion")
    supervised(version_id=candidate.pk)
    wait_for(lambda: ready_version_ids(project) == {champion.pk, candidate.pk})
    client = Client()
    prompt = "What should I cook tonight?"
    first = chat(client, project, key, content=prompt).json()
    second = chat(client, project, key, content=prompt, model="tiny-dpo-v1").json()
    other = chat(client, project, key, content="Another question?").json()

    # a lone thumbs is feedback, not a label: there is nothing to compare it with
    down = thumbs(client, project, key, first["id"], "down")
    assert down.json()["learned"] is False
    # nor are two thumbs on different conversations
    assert thumbs(client, project, key, other["id"], "up").json()["learned"] is False
    assert not Label.objects.exists()

    # when the other answer to the same conversation gets a thumbs up
    up = thumbs(client, project, key, second["id"], "up")
    assert up.status_code == 201
    assert up.json()["learned"] is True

    # then one pairwise label prefers it, and both thumbs point at that label
    label = Label.objects.get()
    assert label.annotator.username == "external:served-web-app"
    winner = label.task.items.get(response_id=label.payload["winner"]).response
    assert winner.model_name == candidate.response_model_name
    learned = set(
        ServedFeedback.objects.filter(learned_label=label).values_list(
            "response__response_id", flat=True
        )
    )
    assert learned == {first["id"], second["id"]}

    # and a further thumbs on the same pair does not make a second label
    again = thumbs(client, project, key, first["id"], "down")
    assert again.json()["learned"] is False
    assert Label.objects.count() == 1
