"""The run page in a real browser (strict CSP): Chart.js curves with tooltips, the log at its
newest line, Cancel and Retry only where they apply, and the page filling in its artifacts,
record and "registered as version N" link by itself when the run succeeds."""

import pytest
from django.contrib.auth import get_user_model
from django.db.models import F
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services
from annotation.roles import Role
from models_registry.models import ModelVersion, TrainingRunVersions, VersionKind
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOG = "\n".join(f"step {s}/40 loss {0.7 - s / 100:.4f}" for s in range(1, 31))


@pytest.fixture
def running_run():
    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    project = services.project_create(name="Runs", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    snapshot = DatasetSnapshot.objects.create(
        project=project, status=SnapshotStatus.READY, max_label_id=0, config={}
    )
    run = TrainingRun.objects.create(
        project=project, method="reward", method_title="Reward model", config={"max_steps": 40},
        dataset_snapshot=snapshot, status=RunStatus.RUNNING, attempt=1,
        progress={"step": 30, "total_steps": 40, "eta_s": 95, "tokens_per_s": 812.4,
                  "loss": 0.4321},
        log_tail=LOG + "\nstep 30/40 loss 0.4321 <b>not bold</b>",
    )  # fmt: skip
    now = timezone.now()
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(run=run, attempt=1, step=s, name=n, value=v, recorded_at=now)
        for s in range(1, 31)
        for n, v in (("loss", 0.7 - s / 100), ("accuracy", s / 40), ("tokens_per_s", 800.0))
    )
    return project, run


def _chart(page, key, script):
    return page.evaluate(
        f"() => {{ const chart = Chart.getChart(document.querySelector('[data-chart={key}]'));"
        f" {script} }}"
    )


def test_run_page_draws_chartjs_curves_with_tooltips_and_the_log_at_its_end(
    page, login, running_run
):
    _project, run = running_run
    login("eng", "eng-pass-123")
    page.goto(f"/runs/{run.pk}/")

    expect(page.locator("[data-testid=step]")).to_have_text("30 / 40")
    expect(page.locator("[data-testid=eta]")).to_have_text("1 min 35 s")
    expect(page.locator("[data-testid=tokens-per-s]")).to_have_text("812")
    # the curves are Chart.js charts (no hand-drawn SVG), one line per series
    expect(page.locator("[data-chart=loss]")).to_have_attribute("data-series", "loss")
    expect(page.locator("[data-chart=accuracy]")).to_have_attribute("data-series", "accuracy")
    assert page.locator("#run-live svg").count() == 0
    assert _chart(page, "loss", "return chart.data.datasets.map((d) => d.data.length);") == [30]
    assert _chart(page, "loss", "return chart.data.datasets[0].label;") == "loss 0.4000"
    # a tooltip names the step and the value
    tooltip = _chart(
        page,
        "loss",
        "chart.tooltip.setActiveElements([{datasetIndex: 0, index: 29}], {x: 0, y: 0});"
        " chart.update(); return [chart.tooltip.title, chart.tooltip.body.map((b) => b.lines)];",
    )
    assert tooltip == [["step 30"], [["loss 0.4000: 0.4000"]]]
    # charts without points say so
    expect(page.locator("[data-empty=kl]")).to_be_visible()
    expect(page.locator("[data-empty=loss]")).to_be_hidden()
    # the log opens at its newest line
    log = page.locator("[data-testid=log]")
    expect(log).to_contain_text("<b>not bold</b>")
    page.wait_for_function(
        "() => { const l = document.querySelector('[data-testid=log]');"
        " return l.scrollHeight > l.clientHeight"
        " && l.scrollTop + l.clientHeight >= l.scrollHeight - 4; }"
    )
    # a running run can be cancelled, not retried
    expect(page.get_by_test_id("cancel-form")).to_be_visible()
    expect(page.get_by_test_id("retry-form")).to_be_hidden()
    assert page.watch.page_errors == []


def test_the_run_page_shows_artifacts_record_and_version_when_the_run_succeeds(
    page, login, running_run
):
    project, run = running_run
    login("eng", "eng-pass-123")
    page.goto(f"/runs/{run.pk}/")
    expect(page.locator("[data-testid=step]")).to_have_text("30 / 40")
    expect(page.locator("[data-testid=artifacts-box]")).to_contain_text("Stored here when")
    assert page.get_by_test_id("run-candidate").count() == 0

    # when the worker finishes the run and the registry registers its model
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        finished_at=timezone.now(),
        progress={"step": 40, "total_steps": 40},
        code_version="abc123def",
        library_versions={"torch": "2.5.0", "transformers": "4.47.0"},
        data_path="/data/snapshot-1/preference",
        checkpoints=[{"global_step": 40, "attempt": 1}],
        artifact_dir="/models/run-1",
        artifacts=[{"path": "model/model.safetensors", "bytes": 2048, "sha256": "f" * 64}],
        revision=F("revision") + 1,
    )
    version = ModelVersion.objects.create(
        project=project, name="reward-model", version=1, kind=VersionKind.REWARD,
        architecture="LlamaForSequenceClassification", backbone="llama",
        source=f"training run {run.pk}", artifact_dir="/models/run-1/model", training_run=run,
    )  # fmt: skip
    TrainingRunVersions.objects.create(run=run, candidate_version=version)
    TrainingRun.objects.filter(pk=run.pk).update(revision=F("revision") + 1)

    # then, without a reload, the page shows what the run left
    expect(page.locator("[data-testid=status]")).to_have_text("succeeded", timeout=15_000)
    link = page.get_by_test_id("run-candidate")
    expect(link).to_have_text(f"version {version.pk}", timeout=15_000)
    expect(link).to_have_attribute("href", f"/models/{version.pk}/")
    artifacts = page.get_by_test_id("artifacts")
    expect(artifacts).to_contain_text("model/model.safetensors")
    expect(artifacts.locator("a")).to_have_attribute(
        "href", f"/api/runs/{run.pk}/artifacts/model/model.safetensors"
    )
    expect(page.get_by_test_id("record-code")).to_have_text("abc123def")
    expect(page.get_by_test_id("record-libraries")).to_have_text(
        "torch 2.5.0 · transformers 4.47.0"
    )
    expect(page.get_by_test_id("record-checkpoints")).to_have_text("step 40 (attempt 1)")
    # and neither Cancel nor Retry applies to a succeeded run
    expect(page.get_by_test_id("cancel-form")).to_be_hidden()
    expect(page.get_by_test_id("retry-form")).to_be_hidden()
    assert page.watch.page_errors == []
