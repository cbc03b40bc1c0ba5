"""The run page draws its curves and state from the API in a real browser (strict CSP)."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services
from annotation.roles import Role
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_run_page_draws_loss_and_accuracy_curves_and_the_log(page, login):
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
        log_tail="step 29/40 loss 0.44\nstep 30/40 loss 0.4321 <b>not bold</b>",
    )  # fmt: skip
    now = timezone.now()
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(run=run, attempt=1, step=s, name=n, value=v, recorded_at=now)
        for s in range(1, 31)
        for n, v in (("loss", 0.7 - s / 100), ("accuracy", s / 40), ("tokens_per_s", 800.0))
    )

    login("eng", "eng-pass-123")
    page.goto(f"/runs/{run.pk}/")

    expect(page.locator("[data-testid=step]")).to_have_text("30 / 40")
    expect(page.locator("[data-testid=eta]")).to_have_text("1 min 35 s")
    expect(page.locator("[data-testid=tokens-per-s]")).to_have_text("812")
    expect(page.locator("[data-chart=loss] polyline[data-series=loss]")).to_have_count(1)
    expect(page.locator("[data-chart=accuracy] polyline[data-series=accuracy]")).to_have_count(1)
    points = page.locator("[data-chart=loss] polyline").get_attribute("points")
    assert len(points.split(" ")) == 30
    expect(page.locator("[data-legend=loss]")).to_contain_text("loss 0.4000")
    expect(page.locator("[data-testid=log]")).to_contain_text("<b>not bold</b>")
    assert page.watch.page_errors == []
