"""A reviewer opens the rounds page in a real browser (strict CSP): the chart draws every point
and the table shows what each round bought."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label, TaskKind
from annotation.roles import Role
from models_registry import services as registry
from models_registry.models import LoopRound, RoundKind, RoundStatus, VersionKind
from rlhf.models import DatasetSnapshot, SnapshotStatus
from rlhf.training.base_models import build_tiny_causal_lm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _candidate(project, engineer, parent, folder, name, labels):
    snapshot = DatasetSnapshot.objects.create(
        project=project, status=SnapshotStatus.READY, max_label_id=0, config={},
        label_count=labels,
    )  # fmt: skip
    return registry.model_version_register(
        project=project, folder=folder, name=name, kind=VersionKind.POLICY,
        registered_by=engineer, launched_by=engineer, parent=parent, dataset_snapshot=snapshot,
    )  # fmt: skip


def _round(project, candidate, opponent, accuracy, reward):
    return LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=candidate, opponent=opponent,
        status=RoundStatus.READY,
        evaluation={
            "reward_accuracy": {"pairs": 40, "before": None,
                                "after": {"version": 1, "accuracy": accuracy}},
            "candidate": {"prompts": 4, "reward_mean": reward, "kl_to_parent": 1.25,
                          "lengths": {"mean": 33.0}},
            "champion": {"prompts": 4, "reward_mean": 0.0, "lengths": {"mean": 30.0}},
        },
    )  # fmt: skip


def test_the_rounds_page_charts_accuracy_and_win_rate_against_labels(page, login, tmp_path):
    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    reviewer = User.objects.create_user("rev", password="rev-pass-123")
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(name="Loop", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    folder = build_tiny_causal_lm(tmp_path / "lm")
    base = registry.model_version_register_base(
        project=project, registered_by=engineer, folder=folder, name="tiny-base"
    )
    first = _candidate(project, engineer, base, folder, "dpo-one", 100)
    second = _candidate(project, engineer, first, folder, "dpo-two", 180)
    one = _round(project, first, base, 0.58, 0.2)
    two = _round(project, second, first, 0.61, 0.3)
    # one blind review of the first round, won by its candidate
    task, _ = services.task_create(
        project=project,
        messages=[{"role": "user", "content": "How do I bake a loaf?"}],
        kind=TaskKind.PAIRWISE,
        responses=[
            {"text": "Knead, rest, bake.", "origin": "model",
             "model_name": first.response_model_name},
            {"text": "Buy one.", "origin": "model", "model_name": base.response_model_name},
        ],
    )  # fmt: skip
    Label.objects.create(
        task=task, annotator=annotator, kind=TaskKind.PAIRWISE,
        payload={"outcome": "A", "strength": None, "rationale": ""},
    )  # fmt: skip

    login("rev", "rev-pass-123")
    page.goto(f"/models/projects/{project.pk}/")
    page.click("[data-testid=rounds-link]")
    chart = page.locator("[data-testid=rounds-chart]")
    expect(chart).to_have_attribute("data-drawn", "true")
    # two accuracy points and one win-rate point (the second round has no review yet)
    expect(chart).to_have_attribute("data-points", "3")
    first_row = page.locator(f"[data-testid=round-{one.pk}]")
    expect(first_row.locator("[data-testid=labels-spent]")).to_have_text("100")
    expect(first_row.locator("[data-testid=win-rate]")).to_contain_text("1.000")
    second_row = page.locator(f"[data-testid=round-{two.pk}]")
    expect(second_row.locator("[data-testid=labels-spent]")).to_have_text("80")
    expect(second_row.locator("[data-testid=rm-accuracy]")).to_contain_text("0.61")
    expect(second_row.locator("[data-testid=length]")).to_contain_text("x1.10")
    expect(second_row.locator("[data-testid=win-rate]")).to_have_text("no reviews yet")
    assert page.watch.page_errors == []
    assert not [e for e in page.watch.console_errors if "Content Security Policy" in e]

    # and a round's own report is one click away
    first_row.locator("a").first.click()
    page.wait_for_url(f"**/models/{first.pk}/report/")
    expect(page.locator(f"[data-testid=round-{one.pk}]")).to_be_visible()
