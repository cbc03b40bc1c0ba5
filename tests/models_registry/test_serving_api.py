"""The serving API: ``/api/projects/<id>/serving/`` (settings, engines, usage; admins) and
``.../serving/target/`` (start or stop serving: the watcher's desired state; audited)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation.audit import DataAuditAction, DataAuditEvent
from annotation.roles import Role
from models_registry.serving.models import (
    EngineStatus,
    ServedResponse,
    ServedStatus,
    ServingEngine,
    ServingSettings,
    ServingTarget,
)

pytestmark = pytest.mark.django_db


def api(project, what=""):
    return f"/api/projects/{project.pk}/serving/{what}"


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def settings_row(project) -> tuple | None:
    row = ServingSettings.objects.filter(project=project).first()
    if row is None:
        return None
    return (row.canary_mode, row.canary_share, row.requests_per_minute, row.learn_from_traffic)


# ----------------------------------------------------------------------------- the gate


def test_only_the_projects_admins_read_or_change_its_serving(
    project, other_project, admin_user, member, base_version
):
    engineer = client_of(member(Role.ENGINEER, "eng"))
    annotator = client_of(member(Role.ANNOTATOR, "ann"))
    reviewer = client_of(member(Role.REVIEWER, "rev"))
    outsider = client_of(member(Role.ADMIN, "outsider", target=other_project))
    patch = {"requests_per_minute": 5}

    assert client_of(admin_user).get(api(project)).status_code == 200
    for refused in (engineer, annotator, reviewer):
        assert refused.get(api(project)).status_code == 403
        response = refused.patch(api(project), patch, content_type="application/json")
        assert response.status_code == 403
        assert refused.post(api(project, "target/"), {}, "application/json").status_code == 403
        assert refused.delete(api(project, "target/")).status_code == 403
    assert outsider.get(api(project)).status_code == 404
    assert outsider.patch(api(project), patch, content_type="application/json").status_code == 404
    assert outsider.post(api(project, "target/"), {}, "application/json").status_code == 404
    assert Client().get(api(project)).status_code in (401, 403)
    # Nothing changed by any refused call.
    assert settings_row(project) is None
    assert not ServingTarget.objects.exists()
    assert not DataAuditEvent.objects.filter(action__startswith="serving").exists()


def test_a_bad_patch_is_a_400_naming_the_field_and_changes_nothing(
    project, other_project, admin_user, base_version, make_user
):
    admin = client_of(admin_user)
    before = settings_row(project)
    for body, field in (
        ({"canary_share": 1.5}, "canary_share"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"canary_mode": "sometimes"}, "canary_mode"),
        ({"requests_per_minute": "many"}, "requests_per_minute"),
        ({"canary_version": 999999}, "canary_version"),
    ):
        response = admin.patch(api(project), body, content_type="application/json")
        assert response.status_code == 400, body
        data = response.json()
        assert field in (data.get("fields") or data), (body, data)
    assert settings_row(project) == before
    assert not DataAuditEvent.objects.filter(action=DataAuditAction.SERVING_SETTINGS_CHANGED)


def test_an_admin_reads_settings_engines_and_the_last_days_usage(project, admin_user, base_version):
    engine = ServingEngine.objects.create(
        project=project, version=base_version, alias="champion", engine="transformers",
        status=EngineStatus.READY, url="http://127.0.0.1:1", folder="/w",
    )  # fmt: skip

    def served(n, *, status=ServedStatus.OK, ttft=None, tokens=(0, 0), route="primary", age=0):
        row = ServedResponse.objects.create(
            response_id=f"r{n}", project=project, version=base_version, engine=engine,
            requested_model="champion", route=route, prompt_hash="h", status=status,
            ttft_ms=ttft, prompt_tokens=tokens[0], completion_tokens=tokens[1],
        )  # fmt: skip
        if age:
            ServedResponse.objects.filter(pk=row.pk).update(
                created_at=timezone.now() - timedelta(hours=age)
            )

    served(1, ttft=100.0, tokens=(10, 5))
    served(2, ttft=300.0, tokens=(10, 7))
    served(3, ttft=200.0, tokens=(4, 0))
    served(4, status=ServedStatus.FAILED)
    served(5, ttft=1.0, tokens=(100, 100), route="shadow")  # the gateway's own: not usage
    served(6, ttft=1.0, tokens=(100, 100), age=25)  # older than a day

    data = client_of(admin_user).get(api(project)).json()

    assert data["gateway_url"] == f"http://testserver/gateway/{project.pk}/v1/"
    assert data["settings"] == {
        "canary_version": None, "canary_mode": "off", "canary_share": 0.0,
        "requests_per_minute": 600, "learn_from_traffic": False,
    }  # fmt: skip
    assert data["target"] is None
    assert [(e["id"], e["version"], e["role"], e["status"]) for e in data["engines"]] == [
        (engine.pk, base_version.pk, "primary", "ready")
    ]
    assert data["engines"][0]["started_at"]
    usage = data["usage"]
    assert (usage["requests"], usage["failures"]) == (4, 1)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (24, 12)
    assert usage["ttft_p50_ms"] == 200.0


def test_a_patch_changes_the_settings_through_the_service_and_is_audited(
    project, admin_user, base_version
):
    response = client_of(admin_user).patch(
        api(project),
        {"requests_per_minute": 30, "learn_from_traffic": True, "canary_mode": "shadow",
         "canary_version": base_version.pk},
        content_type="application/json",
    )  # fmt: skip

    assert response.status_code == 200
    assert response.json()["settings"]["requests_per_minute"] == 30
    assert settings_row(project) == ("shadow", 0.0, 30, True)
    event = DataAuditEvent.objects.get(action=DataAuditAction.SERVING_SETTINGS_CHANGED)
    assert event.actor == admin_user
    assert event.project == project
    assert event.details["changed"] == {
        "requests_per_minute": [600, 30], "learn_from_traffic": [False, True],
        "canary_mode": ["off", "shadow"], "canary_version": [None, base_version.pk],
    }  # fmt: skip


# ----------------------------------------------------------------------------- the target


def test_starting_and_stopping_serving_sets_the_target_and_is_audited(
    project, admin_user, base_version
):
    admin = client_of(admin_user)

    started = admin.post(api(project, "target/"), {"alias": "champion"}, "application/json")

    assert started.status_code == 201
    target = ServingTarget.objects.get(project=project)
    assert (target.alias, target.version, target.enabled, target.requested_by) == (
        "champion", None, True, admin_user,
    )  # fmt: skip
    assert target.options == {"engine": "auto", "device": "auto"}
    assert started.json()["target"]["enabled"] is True

    stopped = admin.delete(api(project, "target/"))

    assert stopped.status_code == 200
    target.refresh_from_db()
    assert target.enabled is False
    assert stopped.json()["target"]["enabled"] is False
    events = list(
        DataAuditEvent.objects.filter(project=project, action__startswith="serving_").order_by("id")
    )
    assert [(e.action, e.actor, e.subject) for e in events] == [
        (DataAuditAction.SERVING_STARTED, admin_user, f"serving:{project.pk}"),
        (DataAuditAction.SERVING_STOPPED, admin_user, f"serving:{project.pk}"),
    ]
    assert events[0].details["alias"] == "champion"
    # Stopping what is off changes nothing and records nothing.
    assert admin.delete(api(project, "target/")).status_code == 200
    assert DataAuditEvent.objects.filter(action__startswith="serving_").count() == 2


def test_a_target_naming_nothing_of_this_project_is_a_400_naming_the_field(
    project, other_project, admin_user, base_version, tiny_base_dir
):
    from models_registry import services as registry

    foreign = registry.model_version_register_base(
        project=other_project, registered_by=admin_user, folder=tiny_base_dir, name="theirs"
    )
    admin = client_of(admin_user)
    for body, field in (
        ({"alias": "no-such-alias"}, "alias"),
        ({"version": foreign.pk}, "version"),
        ({"version": base_version.pk, "alias": "champion"}, "alias"),
        ({"alias": "champion", "engine": "llama"}, "engine"),
        ({"alias": "champion", "device": "gpu; rm -rf /"}, "device"),
    ):
        response = admin.post(api(project, "target/"), body, "application/json")
        assert response.status_code == 400, body
        data = response.json()
        assert field in (data.get("fields") or data), (body, data)
    assert not ServingTarget.objects.exists()
    assert not DataAuditEvent.objects.filter(action__startswith="serving_").exists()


def test_the_overview_names_the_host_that_serves_the_target(project, admin_user, base_version):
    admin = client_of(admin_user)
    admin.post(api(project, "target/"), {"alias": "champion"}, "application/json")

    assert admin.get(api(project)).json()["target"]["served_by"] is None  # no watcher yet

    ServingTarget.objects.filter(project=project).update(
        holder="gpu-7.internal:4242:ab12cd", lease_expires_at=timezone.now() + timedelta(seconds=30)
    )

    assert admin.get(api(project)).json()["target"]["served_by"] == "gpu-7.internal"
    page = admin.get(f"/models/projects/{project.pk}/serving/")
    assert page.status_code == 200
    assert "gpu-7.internal" in page.content.decode()
