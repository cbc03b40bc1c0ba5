"""The serving targets' lease (``serving_targets_claim`` / ``serving_targets_release``): which
watcher holds which target, and what happens to a lost holder's engines. Service level, on
SQLite or PostgreSQL; the watchers themselves, racing claims included, are in
test_serving_watch.py (PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_registry.serving import services
from models_registry.serving.models import EngineStatus, ServingEngine, ServingTarget

pytestmark = pytest.mark.django_db

A, B = "host-a:1:aaaa", "host-b:2:bbbb"


@pytest.fixture
def target(project, admin_user, base_version):
    return services.serving_target_start(project=project, actor=admin_user, alias="champion")


def engine_of(project, version, *, watcher, status=EngineStatus.READY):
    return ServingEngine.objects.create(
        project=project, version=version, alias="champion", engine="transformers",
        status=status, url="http://127.0.0.1:1", folder="/w", watcher=watcher,
    )  # fmt: skip


def lease_of(project) -> tuple[str, object]:
    row = ServingTarget.objects.get(project=project)
    return row.holder, row.lease_expires_at


def expire(project):
    ServingTarget.objects.filter(project=project).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_free_enabled_target_is_claimed_and_then_renewed_by_its_holder_only(project, target):
    before = timezone.now()

    held = services.serving_targets_claim(watcher=A, lease_s=30)

    assert [t.project_id for t in held] == [project.pk]
    holder, expires = lease_of(project)
    assert holder == A
    assert before + timedelta(seconds=25) < expires < timezone.now() + timedelta(seconds=35)
    assert services.serving_targets_claim(watcher=B, lease_s=30) == []
    assert lease_of(project) == (A, expires)  # b's claim changed nothing

    services.serving_targets_claim(watcher=A, lease_s=60)

    assert lease_of(project)[1] > expires  # renewed


def test_an_expired_lease_moves_and_the_lost_holders_live_engines_are_failed(
    project, target, base_version
):
    services.serving_targets_claim(watcher=A, lease_s=30)
    theirs = engine_of(project, base_version, watcher=A)
    draining = engine_of(project, base_version, watcher=A, status=EngineStatus.DRAINING)
    by_hand = engine_of(project, base_version, watcher="")  # `serve --project` by hand
    stopped = engine_of(project, base_version, watcher=A, status=EngineStatus.STOPPED)
    expire(project)

    held = services.serving_targets_claim(watcher=B, lease_s=30)

    assert [t.project_id for t in held] == [project.pk]
    assert lease_of(project)[0] == B
    for engine in (theirs, draining):
        engine.refresh_from_db()
        assert engine.status == EngineStatus.FAILED
        assert engine.error == f"its watcher lost the lease; {B} took the serving target over"
        assert engine.stopped_at is not None
    for engine, status in ((by_hand, EngineStatus.READY), (stopped, EngineStatus.STOPPED)):
        engine.refresh_from_db()
        assert (engine.status, engine.error) == (status, "")


def test_a_disabled_target_is_claimed_only_from_an_expired_holder_and_never_when_free(
    project, admin_user, target, base_version
):
    services.serving_target_stop(project=project, actor=admin_user)
    assert services.serving_targets_claim(watcher=A, lease_s=30) == []
    assert lease_of(project) == ("", None)

    ServingTarget.objects.filter(project=project).update(holder=A)  # a holder that died
    expire(project)
    theirs = engine_of(project, base_version, watcher=A)

    held = services.serving_targets_claim(watcher=B, lease_s=30)

    assert [(t.project_id, t.enabled) for t in held] == [(project.pk, False)]
    theirs.refresh_from_db()
    assert theirs.status == EngineStatus.FAILED  # no longer routed to


def test_a_release_frees_only_the_releasers_leases(project, other_project, admin_user, target):
    services.serving_targets_claim(watcher=A, lease_s=30)

    assert services.serving_targets_release(watcher=B) == 0
    assert lease_of(project)[0] == A
    assert services.serving_targets_release(watcher=A, project_ids=[other_project.pk]) == 0
    assert services.serving_targets_release(watcher=A) == 1

    assert lease_of(project) == ("", None)
    assert [t.project_id for t in services.serving_targets_claim(watcher=B, lease_s=30)] == [
        project.pk
    ]


def test_only_the_holder_reports_on_a_target(project, target):
    services.serving_targets_claim(watcher=A, lease_s=30)

    services.serving_target_report(project_id=project.pk, error="RuntimeError: b's", holder=B)
    assert ServingTarget.objects.get(project=project).error == ""

    services.serving_target_report(project_id=project.pk, error="RuntimeError: a's", holder=A)
    assert ServingTarget.objects.get(project=project).error == "RuntimeError: a's"


def test_serve_watch_refuses_a_lease_shorter_than_two_polls(tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--watch-lease must be at least two --watch-poll"):
        call_command(
            "serve", "--watch", "--watch-poll", "3", "--watch-lease", "5",
            "--log-dir", str(tmp_path),
        )  # fmt: skip
    assert not (tmp_path / "watch.lock").exists()  # refused before it took the host's lock
