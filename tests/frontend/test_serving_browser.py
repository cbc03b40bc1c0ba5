"""A project admin serves the champion from the browser (strict CSP): Home → Serving, saves the
settings, starts serving, sees the engines refresh, stops serving.

Starting here sets the serving target (the desired state) and is checked as the row the page
wrote; the watcher that turns a target into an engine process is tested on its own with the
stand-in engine (tests/models_registry/test_serving_watch.py). The engine row the page then
shows is written by the test, as the watcher would."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.audit import DataAuditAction, DataAuditEvent
from annotation.roles import Role
from models_registry import services as registry
from models_registry.serving.models import (
    EngineStatus,
    ServingEngine,
    ServingSettings,
    ServingTarget,
)
from models_registry.serving.services import serving_target_report
from rlhf.training.base_models import build_tiny_causal_lm

from .axe import assert_no_serious_axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_reaches_serving_from_home_saves_settings_and_starts_the_champion(
    page, login, tmp_path
):
    User = get_user_model()
    admin = User.objects.create_user("adm", password="adm-pass-123")
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    project = services.project_create(name="Served", created_by=admin, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    base = registry.model_version_register_base(
        project=project, registered_by=engineer, folder=build_tiny_causal_lm(tmp_path / "lm"),
        name="tiny-base",
    )  # fmt: skip

    login("adm", "adm-pass-123")
    page.get_by_test_id(f"serving-{project.slug}").click()

    page.wait_for_url(f"**/models/projects/{project.pk}/serving/")
    expect(page.locator("#serving")).to_have_attribute("data-ready", "true")
    gateway = f"/gateway/{project.pk}/v1/"
    expect(page.get_by_test_id("gateway-url")).to_contain_text(gateway)
    expect(page.get_by_test_id("code-sample")).to_contain_text("Authorization: Bearer <serve key>")
    expect(page.get_by_test_id("serve-key-link")).to_have_attribute("href", "/account/?scope=serve")
    expect(page.get_by_test_id("serving-settings")).to_contain_text("Turn it on only if")
    assert_no_serious_axe_violations(page, "the Serving page")

    # Settings: a bad share is refused, naming the field; then a good change is saved.
    form = page.get_by_test_id("serving-settings-form")
    form.locator("input[name=requests_per_minute]").fill("30")
    form.locator("input[name=learn_from_traffic]").check()
    form.locator("select[name=canary_mode]").select_option("split")
    form.locator("select[name=canary_version]").select_option(str(base.pk))
    form.locator("input[name=canary_share]").evaluate("(input) => { input.value = '2'; }")
    form.locator("input[name=canary_share]").evaluate("(input) => input.form.noValidate = true")
    page.get_by_test_id("serving-settings-save").click()
    expect(page.get_by_test_id("serving-status")).to_contain_text("canary_share")
    assert not ServingSettings.objects.filter(project=project, requests_per_minute=30).exists()

    form.locator("input[name=canary_share]").fill("0.25")
    page.get_by_test_id("serving-settings-save").click()
    expect(page.get_by_test_id("serving-status")).to_have_text("Settings saved.")
    saved = ServingSettings.objects.get(project=project)
    assert (saved.requests_per_minute, saved.learn_from_traffic) == (30, True)
    assert (saved.canary_mode, saved.canary_share, saved.canary_version) == ("split", 0.25, base)

    # Start serving the champion: the target the watcher follows.
    page.get_by_test_id("serving-start").click()
    expect(page.get_by_test_id("target-state")).to_contain_text("On: serving the alias")
    target = ServingTarget.objects.get(project=project)
    assert (target.alias, target.enabled, target.requested_by) == ("champion", True, admin)

    # What the watcher reports shows on Refresh: first why it cannot serve, then the engine.
    expect(page.get_by_test_id("target-error")).to_be_hidden()
    serving_target_report(project_id=project.pk, error="RuntimeError: no engine here")
    page.get_by_test_id("serving-refresh").click()
    expect(page.get_by_test_id("target-error")).to_have_text(
        "Not serving: RuntimeError: no engine here"
    )
    serving_target_report(project_id=project.pk, error="")
    engine = ServingEngine.objects.create(
        project=project, version=base, alias="champion", engine="transformers",
        status=EngineStatus.READY, url="http://127.0.0.1:1", folder="/w",
    )  # fmt: skip
    page.get_by_test_id("serving-refresh").click()
    expect(page.get_by_test_id(f"engine-{engine.pk}")).to_contain_text("ready")
    expect(page.get_by_test_id("target-error")).to_be_hidden()

    page.get_by_test_id("serving-stop").click()
    expect(page.get_by_test_id("target-state")).to_contain_text("Off (stopped by adm)")
    target.refresh_from_db()
    assert target.enabled is False
    actions = list(
        DataAuditEvent.objects.filter(project=project, action__startswith="serving")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        DataAuditAction.SERVING_SETTINGS_CHANGED,
        DataAuditAction.SERVING_STARTED,
        DataAuditAction.SERVING_STOPPED,
    ]
    assert page.watch.page_errors == []
    assert [e for e in page.watch.console_errors if "400" not in e] == []
