"""``manage.py serve --watch``: a supervisor per enabled serving target, started and stopped as
the targets change, and several watchers ("hosts") sharing the targets through a lease. The
engine is the stand-in ``fake_engine.py`` (see test_serving.py); each watcher steps in a thread
of its own (its own database connection, as a second host has), so this runs on PostgreSQL
(SQLite locks with the engine thread)."""

# ruff: noqa: F811 (the stand-in engine fixtures are test_serving.py's, imported)
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
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
    assert engine.url.startswith("http://127.0.0.1:")  # one host: the bind address, as before
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


# ----------------------------------------------------------------------------- several hosts


class Host:
    """One ``serve --watch`` on a host of its own: a Watcher stepped by its own thread (its own
    database connection). ``stall()`` stops its steps without stopping it, as a host that hangs
    (or loses the database) longer than its lease; ``stop()`` is a clean stop (SIGTERM)."""

    def __init__(self, config: WatchConfig):
        self.watcher = Watcher(config)
        self.stalled = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        try:
            while not self.stopped.is_set():
                if not self.stalled.is_set():
                    self.watcher.step()
                time.sleep(0.05)
        finally:
            self.watcher.stop_all()
            connection.close()

    def stall(self):
        self.stalled.set()

    def wake(self):
        self.stalled.clear()

    def stop(self):
        self.stopped.set()
        self.thread.join(timeout=60)

    def serves(self, project) -> bool:
        return project.pk in self.watcher.running


@pytest.fixture
def hosts(fake_engines, tmp_path):
    started = []

    def start(name, *, lease_s, advertise_host=""):
        host = Host(
            WatchConfig(
                poll_s=0.1,
                step_s=0.05,
                lease_s=lease_s,
                serve=ServeConfig(
                    project_id=0, poll_s=0.05, drain_grace_s=0.3, log_dir=tmp_path / name,
                    advertise_host=advertise_host,
                ),
            )
        )  # fmt: skip
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def holder_of(project) -> str:
    return ServingTarget.objects.get(project=project).holder


def test_two_hosts_never_both_start_an_engine_for_one_target(project, admin_user, champion, hosts):
    a = hosts("a", lease_s=2.0)
    b = hosts("b", lease_s=2.0)

    services.serving_target_start(project=project, actor=admin_user, alias="champion")

    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    time.sleep(3.0)  # longer than a lease: the holder renews it at every poll, none moves
    engine = ServingEngine.objects.get(project=project)  # the only engine ever started
    assert engine.status == EngineStatus.READY
    holder, idle = (a, b) if holder_of(project) == a.watcher.id else (b, a)
    assert holder_of(project) == holder.watcher.id
    assert engine.watcher == holder.watcher.id
    assert (holder.serves(project), idle.serves(project)) == (True, False)
    assert idle.watcher.retiring == []


def test_a_stalled_hosts_target_moves_once_its_lease_expires_and_it_retires_on_waking(
    project, admin_user, champion, hosts
):
    a = hosts("a", lease_s=2.5)
    services.serving_target_start(project=project, actor=admin_user, alias="champion")
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    assert holder_of(project) == a.watcher.id
    first = engines_of(project, EngineStatus.READY).get()
    process = a.watcher.running[project.pk][1].processes[first.pk]
    b = hosts("b", lease_s=2.5)
    time.sleep(0.5)
    assert holder_of(project) == a.watcher.id  # a renews: b waits

    a.stall()

    wait_for(lambda: holder_of(project) == b.watcher.id)
    # The old holder's engine is not routed to any more (its host may be dead): failed.
    first.refresh_from_db()
    assert first.status == EngineStatus.FAILED
    assert b.watcher.id in first.error
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    second = engines_of(project, EngineStatus.READY).get()
    assert (second.watcher, second.pk != first.pk) == (b.watcher.id, True)
    assert process.poll() is None  # a is stalled: its engine still runs, unrouted

    a.wake()

    wait_for(lambda: process.poll() is not None)  # a saw it lost the target: engine stopped
    wait_for(lambda: not a.serves(project) and a.watcher.retiring == [])
    assert holder_of(project) == b.watcher.id
    first.refresh_from_db()
    assert first.status == EngineStatus.FAILED  # a does not write over b's word
    assert list(engines_of(project, EngineStatus.READY)) == [second]


def test_a_clean_stop_hands_the_target_over_at_once(project, admin_user, champion, hosts):
    a = hosts("a", lease_s=30.0)  # an expiry would take 30 s: only a release is this quick
    services.serving_target_start(project=project, actor=admin_user, alias="champion")
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    first = engines_of(project, EngineStatus.READY).get()
    b = hosts("b", lease_s=30.0)

    a.stop()

    assert holder_of(project) in ("", b.watcher.id)
    first.refresh_from_db()
    assert first.status == EngineStatus.STOPPED  # stopped by its own watcher, not failed
    wait_for(lambda: holder_of(project) == b.watcher.id, timeout=10)
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists(), timeout=10)
    assert engines_of(project, EngineStatus.READY).get().watcher == b.watcher.id


def test_a_stopped_target_is_handed_back_once_its_engines_are_stopped(
    project, admin_user, champion, hosts
):
    a = hosts("a", lease_s=30.0)
    services.serving_target_start(project=project, actor=admin_user, alias="champion")
    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())

    services.serving_target_stop(project=project, actor=admin_user)

    wait_for(lambda: holder_of(project) == "")
    assert not a.serves(project)
    assert not engines_of(
        project, EngineStatus.STARTING, EngineStatus.READY, EngineStatus.DRAINING
    ).exists()


def test_two_claims_racing_for_one_target_have_one_winner(project, admin_user, champion):
    services.serving_target_start(project=project, actor=admin_user, alias="champion")
    theirs = []

    def claim_on_another_host():
        try:
            theirs.extend(services.serving_targets_claim(watcher="host-b:2:bb", lease_s=30))
        finally:
            connection.close()

    with transaction.atomic():  # host a's claim, not committed yet
        mine = services.serving_targets_claim(watcher="host-a:1:aa", lease_s=30)
        other = threading.Thread(target=claim_on_another_host)
        other.start()
        # b's claim reached the row and waits for a's transaction (a lock not granted).
        with connection.cursor() as cursor:

            def b_waits():
                cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                return cursor.fetchone()[0] > 0

            wait_for(b_waits)
    other.join(timeout=30)

    assert [t.project_id for t in mine] == [project.pk]
    assert theirs == []
    assert holder_of(project) == "host-a:1:aa"


def test_an_engine_advertises_the_host_the_web_hosts_reach_it_by(
    project, admin_user, champion, hosts
):
    hosts("a", lease_s=30.0, advertise_host="localhost")  # bound to 127.0.0.1, the default

    services.serving_target_start(project=project, actor=admin_user, alias="champion")

    wait_for(lambda: engines_of(project, EngineStatus.READY).exists())
    engine = engines_of(project, EngineStatus.READY).get()
    assert engine.url.startswith("http://localhost:")
    assert engine.command[engine.command.index("--host") + 1] == "127.0.0.1"
