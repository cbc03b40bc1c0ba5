"""``manage.py serve --watch``: a supervisor per enabled serving target, started and stopped as
the targets change. The engine is the stand-in ``fake_engine.py`` (see test_serving.py); the
watcher steps in a thread, so this runs on PostgreSQL (SQLite locks with the engine thread)."""

# ruff: noqa: F811 (the stand-in engine fixtures are test_serving.py's, imported)
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from models_registry.serving import services
from models_registry.serving.models import EngineStatus, ServingEngine, ServingTarget
from models_registry.serving.supervisor import ServeConfig
from models_registry.serving.watcher import AlreadyWatching, WatchConfig, Watcher, watch_lock
from tests.models_registry.test_serving import champion, fake_engines, key, wait_for  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def watching(fake_engines, tmp_path):
    watcher = Watcher(
        WatchConfig(
            poll_s=0.1,
            step_s=0.05,
            serve=ServeConfig(project_id=0, poll_s=0.05, drain_grace_s=0.3, log_dir=tmp_path),
        )
    )
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                watcher.step()
                time.sleep(0.05)
        finally:
            watcher.stop_all()
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield watcher
    stop.set()
    thread.join(timeout=60)


def engines_of(project, *statuses):
    return ServingEngine.objects.filter(project=project, status__in=statuses)


def test_the_watcher_serves_an_enabled_target_and_stops_it_when_disabled(
    project,
    admin_user,
    champion,
    key,
    watching,
):
    assert not engines_of(project, EngineStatus.STARTING, EngineStatus.READY).exists()

    services.serving_target_start(project=project, actor=admin_user, alias="champion")

    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    engine = engines_of(project, EngineStatus.READY).get()
    assert (engine.version, engine.alias, engine.role) == (champion, "champion", "primary")
    assert project.pk in watching.running
    process = watching.running[project.pk][1].processes[engine.pk]
    answer = Client().post(
        f"/gateway/{project.pk}/v1/chat/completions",
        {"model": "champion", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 200

    services.serving_target_stop(project=project, actor=admin_user)

    wait_for(lambda: ServingEngine.objects.get(pk=engine.pk).status == EngineStatus.STOPPED)
    wait_for(lambda: process.poll() is not None)  # the engine's process is gone
    wait_for(lambda: not watching.retiring)
    assert project.pk not in watching.running
    assert not engines_of(
        project, EngineStatus.STARTING, EngineStatus.READY, EngineStatus.DRAINING
    ).exists()


def test_a_target_turned_on_again_starts_a_fresh_engine(
    project,
    admin_user,
    champion,
    watching,
):
    services.serving_target_start(project=project, actor=admin_user, alias="champion")
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    services.serving_target_stop(project=project, actor=admin_user)
    wait_for(lambda: not engines_of(project, EngineStatus.READY, EngineStatus.DRAINING).exists())

    services.serving_target_start(project=project, actor=admin_user, alias="champion")

    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    assert ServingEngine.objects.filter(project=project).count() == 2


def test_one_watcher_per_host(tmp_path):
    held = watch_lock(tmp_path / "watch.lock")
    try:
        with pytest.raises(AlreadyWatching):
            watch_lock(tmp_path / "watch.lock")
    finally:
        held.close()
    watch_lock(tmp_path / "watch.lock").close()  # free again once the first one ends


def test_why_a_target_cannot_be_served_is_written_on_it_until_it_can(
    project, admin_user, champion, watching, monkeypatch
):
    from models_registry.serving import engines

    monkeypatch.setattr(engines, "engine_available", lambda kind: "the engine is not installed")

    services.serving_target_start(project=project, actor=admin_user, alias="champion")

    def error():
        return ServingTarget.objects.get(project=project).error

    wait_for(lambda: error() == "RuntimeError: the engine is not installed")
    assert not ServingEngine.objects.filter(project=project).exists()

    monkeypatch.setattr(engines, "engine_available", lambda kind: None)

    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    wait_for(lambda: error() == "")
