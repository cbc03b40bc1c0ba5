"""An engineer picks two runs on the runs list and compares them; the launch form's presets
and its fields that show only where they apply (real Chromium, the site's strict CSP)."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services
from annotation.roles import Role
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _engineer_project():
    engineer = get_user_model().objects.create_user("eng", password="eng-pass-123")
    project = services.project_create(name="Runs", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    snapshot = DatasetSnapshot.objects.create(
        project=project, status=SnapshotStatus.READY, max_label_id=0, config={},
        row_counts={"preference": {"train": 10}},
    )  # fmt: skip
    return project, snapshot


def _watch_failures(page) -> list[str]:
    failed: list[str] = []
    # A request the browser itself aborted because the page moved on (the favicon's, during
    # a navigation) is not a failure of the app; any other failed request is.
    page.on(
        "requestfailed",
        lambda request: (
            None
            if "ERR_ABORTED" in (request.failure or "")
            else failed.append(f"failed {request.url} ({request.failure})")
        ),
    )
    page.on(
        "response",
        lambda response: (
            failed.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )
    return failed


def test_runs_list_pick_two_then_compare_shows_both_curves_and_the_differing_field(page, login):
    project, snapshot = _engineer_project()
    runs = [
        TrainingRun.objects.create(
            project=project, name=name, method="dpo", method_title="DPO",
            config={"learning_rate": lr, "beta": 0.1}, dataset_snapshot=snapshot,
            status=RunStatus.SUCCEEDED, attempt=1,
        )
        for name, lr in (("fast", 5e-5), ("slow", 1e-5), ("unpicked", 1e-6))
    ]  # fmt: skip
    now = timezone.now()
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(run=run, attempt=1, step=s, name="loss", value=scale / s, recorded_at=now)
        for run, scale in zip(runs, (1.0, 2.0, 3.0), strict=True)
        for s in range(1, 21)
    )
    failed = _watch_failures(page)
    login("eng", "eng-pass-123")

    page.goto(f"/runs/projects/{project.pk}/")
    page.check(f"[data-testid=pick-{runs[0].pk}]")
    page.check(f"[data-testid=pick-{runs[1].pk}]")
    page.click("[data-testid=compare]")

    page.wait_for_url(f"**/runs/projects/{project.pk}/compare/?run=*")
    picked = sorted(int(part.split("=")[1]) for part in page.url.split("?")[1].split("&"))
    assert picked == [runs[0].pk, runs[1].pk]
    expect(page.locator("[data-testid=curves-status]")).to_have_text("1 metrics")
    expect(page.locator("[data-testid=compare-chart-loss] canvas")).to_have_count(1)
    labels = page.evaluate(
        "() => Chart.getChart(document.querySelector('[data-metric=loss]'))"
        ".data.datasets.map(d => [d.label, d.data.length])"
    )
    # (sorted on both sides: as text, "#100 slow" sorts before "#99 fast")
    assert sorted(labels) == sorted([[f"#{runs[0].pk} fast", 20], [f"#{runs[1].pk} slow", 20]])
    differing = page.locator("[data-testid=config-row-learning_rate]")
    expect(differing).to_have_class("differs")
    expect(differing).to_have_attribute("data-differs", "true")
    expect(page.locator("[data-testid=config-row-beta]")).to_have_attribute("data-differs", "false")

    # smoothing and the log scale redraw the same chart
    page.fill("[data-testid=smoothing]", "0.9")
    expect(page.locator("[data-testid=smoothing-value]")).to_have_text("0.90")
    page.check("[data-testid=log-scale]")
    state = page.evaluate(
        "() => { const c = Chart.getChart(document.querySelector('[data-metric=loss]'));"
        " return [c.options.scales.y.type,"
        " Object.fromEntries(c.data.datasets.map(d => [d.label, d.data[1].y]))]; }"
    )
    assert state[0] == "logarithmic"
    # the EMA of 1, 1/2 (x scale) with weight 0.9, debiased: (0.09 + 0.05) / 0.19 (x scale)
    ema = (0.9 * 0.1 * 1.0 + 0.1 * 0.5) / (1 - 0.81)
    assert state[1] == {f"#{runs[0].pk} fast": pytest.approx(ema),
                        f"#{runs[1].pk} slow": pytest.approx(2 * ema)}  # fmt: skip
    page.check("[data-testid=only-differences]")
    expect(page.locator("[data-testid=config-row-beta]")).to_be_hidden()
    expect(differing).to_be_visible()

    assert page.watch.console_errors == []
    assert page.watch.page_errors == []
    assert failed == []


def test_launch_form_preset_fills_fields_and_lora_fields_follow_the_checkbox(page, login, settings):
    settings.TANDEM_GPU_PRESENT = False
    project, _ = _engineer_project()
    failed = _watch_failures(page)
    login("eng", "eng-pass-123")

    page.goto(f"/runs/projects/{project.pk}/new/?method=reward")
    lora_r = page.locator("[data-field=lora_r]")
    expect(lora_r).to_be_hidden()
    expect(page.locator("[data-field=encoder_max_length]")).to_be_hidden()
    page.check("input[name=use_lora]")
    expect(lora_r).to_be_visible()
    page.select_option("select[name=backbone]", "encoder")
    expect(page.locator("[data-field=encoder_max_length]")).to_be_visible()
    expect(page.locator("[data-field=max_length]")).to_be_hidden()
    expect(page.locator("[data-field=deepspeed_zero_stage]")).to_have_count(0)

    page.select_option("[data-testid=preset]", "quick_cpu")
    expect(page.locator("input[name=max_steps]")).to_have_value("10")
    expect(page.locator("input[name=per_device_batch_size]")).to_have_value("4")
    expect(page.locator("select[name=device]")).to_have_value("cpu")
    page.fill("input[name=max_steps]", "7")  # a change after the preset wins
    expect(page.locator("input[name=max_steps]")).to_have_value("7")

    assert page.watch.console_errors == []
    assert page.watch.page_errors == []
    assert failed == []
