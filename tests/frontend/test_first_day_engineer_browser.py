"""An ML engineer's first day, from the home page by clicking only: make a snapshot of the
labels, launch a run on it with a preset, compare two finished runs, download an artifact.
axe runs on every page; no console error, no failed request."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from annotation import services
from annotation.roles import Role
from models_registry import services as registry
from rlhf.models import DatasetSnapshot, RunStatus, SnapshotStatus, TrainingRun, TrainingRunMetric
from rlhf.snapshots import services as snapshot_services
from rlhf.training.base_models import build_tiny_causal_lm

from .walk import Walk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def engineer_project(settings, tmp_path):
    """A project with twelve labelled pairs, and two finished DPO runs (on an older snapshot)
    with loss curves; the first stored one artifact. A tiny base model is registered."""
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_SNAPSHOT_WORKERS = 0
    settings.TANDEM_GPU_PRESENT = False
    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(name="Engines", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    for n in range(12):
        services.task_create(
            project=project, kind="pairwise",
            messages=[{"role": "user", "content": f"How do I fix bug {n}?"}],
            responses=[{"text": f"Read the traceback of bug {n}, then test.", "origin": "model",
                        "model_name": "m"},
                       {"text": "Reboot.", "origin": "model", "model_name": "m"}],
        )  # fmt: skip
        lease = services.task_claim_next(project=project, annotator=annotator)
        services.label_submit(task=lease.task, annotator=annotator, payload={"choice": "left"})
    older = DatasetSnapshot.objects.create(
        project=project, status=SnapshotStatus.READY, max_label_id=0, config={}, name="older",
        row_counts={shape: {"train": 10, "validation": 1, "test": 1}
                    for shape in ("preference", "kto", "sft", "prompt_only")},
    )  # fmt: skip
    artifact_dir = tmp_path / "run-artifacts"
    artifact_dir.mkdir()
    (artifact_dir / "metrics.json").write_text('{"loss": 0.05}')
    runs = [
        TrainingRun.objects.create(
            project=project, name=name, method="dpo", method_title="DPO",
            config={"learning_rate": lr, "beta": 0.1}, dataset_snapshot=older,
            status=RunStatus.SUCCEEDED, attempt=1, created_by=engineer,
        )
        for name, lr in (("fast", 5e-5), ("slow", 1e-5))
    ]  # fmt: skip
    TrainingRun.objects.filter(pk=runs[0].pk).update(
        artifact_dir=str(artifact_dir),
        artifacts=[{"path": "metrics.json", "bytes": 14, "sha256": "0" * 64}],
    )
    now = timezone.now()
    TrainingRunMetric.objects.bulk_create(
        TrainingRunMetric(run=run, attempt=1, step=s, name="loss", value=scale / s, recorded_at=now)
        for run, scale in zip(runs, (1.0, 2.0), strict=True)
        for s in range(1, 21)
    )
    base = registry.model_version_register_base(
        project=project,
        registered_by=engineer,
        folder=build_tiny_causal_lm(tmp_path / "lm"),
        name="tiny-base",
    )
    return project, base, runs


def test_an_engineer_snapshots_launches_with_a_preset_compares_and_downloads(
    page, login, engineer_project
):
    project, base, (fast, slow) = engineer_project
    walk = Walk(page)
    login("eng", "eng-pass-123")
    walk.arrive("**/", f"[data-testid=project-{project.slug}]")

    # Home → Data snapshots → a new snapshot, queued
    walk.click(
        f"[data-testid=snapshots-{project.slug}]",
        f"**/data/projects/{project.pk}/snapshots/",
        "[data-testid=snapshot-create]",
    )
    page.fill("[data-testid=snapshot-create] input[name=name]", "first day")
    walk.click(
        "[data-testid=snapshot-create] button[type=submit]",
        f"**/data/projects/{project.pk}/snapshots/",
        ".message.success",
    )
    snapshot = DatasetSnapshot.objects.get(project=project, name="first day")
    expect(page.locator(".message.success")).to_have_text(f"Snapshot {snapshot.pk} queued.")
    # (the snapshots worker builds it, as `manage.py db_worker --queue-name snapshots` would)
    snapshot_services.snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.READY, snapshot.error

    # → the snapshot's page, built, with its data card and charts
    walk.click(
        f"[data-testid=snapshot-list] a[href$='/data/snapshots/{snapshot.pk}/']",
        f"**/data/snapshots/{snapshot.pk}/",
        "h1",
    )
    expect(page.locator("main > h1")).to_contain_text("ready")

    # → Training runs → Launch DPO with the quick CPU preset, on the new snapshot
    walk.click("[data-testid=nav-runs]", f"**/runs/projects/{project.pk}/", "h1")
    walk.click("[data-testid=launch-dpo]", f"**/runs/projects/{project.pk}/new/?method=dpo", "h1")
    page.select_option("[data-testid=snapshot]", str(snapshot.pk))
    page.select_option("[data-testid=base-source]", f"version:{base.pk}")
    page.select_option("[data-testid=preset]", "quick_cpu")
    expect(page.locator("input[name=max_steps]")).to_have_value("10")
    page.fill("input[name=name]", "first-day dpo")
    walk.click("[data-testid=run-form] button[type=submit]", "**/runs/*/", "[data-testid=status]")
    launched = TrainingRun.objects.get(project=project, name="first-day dpo")
    assert (launched.dataset_snapshot_id, launched.status) == (snapshot.pk, RunStatus.QUEUED)
    assert launched.config["max_steps"] == 10
    expect(page.locator("h1")).to_contain_text(f"Run {launched.pk}")
    expect(page.locator("#run-live > p.muted").first).to_contain_text(f"from version {base.pk}")

    # → the runs list: compare the two finished runs
    walk.click("nav.nav a.crumb", f"**/runs/projects/{project.pk}/", "[data-testid=run-list]")
    page.check(f"[data-testid=pick-{fast.pk}]")
    page.check(f"[data-testid=pick-{slow.pk}]")
    walk.click(
        "[data-testid=compare]",
        f"**/runs/projects/{project.pk}/compare/?run=*",
        "[data-testid=compare-chart-loss] canvas",
    )
    expect(page.locator("[data-testid=config-row-learning_rate]")).to_have_attribute(
        "data-differs", "true"
    )

    # → the fast run's page → download its artifact
    walk.click(f"h1 a:has-text('#{fast.pk}')", f"**/runs/{fast.pk}/", "[data-testid=artifacts]")
    with page.expect_download() as download:
        page.click("[data-testid=artifacts] a:has-text('metrics.json')")
    assert download.value.suggested_filename == "metrics.json"
    assert Path(download.value.path()).read_text() == '{"loss": 0.05}'

    walk.home()
    assert walk.visited == [
        "/",
        f"/data/projects/{project.pk}/snapshots/",
        f"/data/projects/{project.pk}/snapshots/",
        f"/data/snapshots/{snapshot.pk}/",
        f"/runs/projects/{project.pk}/",
        f"/runs/projects/{project.pk}/new/",
        f"/runs/{launched.pk}/",
        f"/runs/projects/{project.pk}/",
        f"/runs/projects/{project.pk}/compare/",
        f"/runs/{fast.pk}/",
        "/",
    ]
    walk.assert_clean()
