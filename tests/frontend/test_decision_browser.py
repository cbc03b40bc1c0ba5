"""A reviewer decides on a candidate in a real browser (strict CSP); an annotator cannot."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.roles import Role
from models_registry import selectors
from models_registry.models import AuditEvent

from .conftest import tiny_reward_candidate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_approves_on_the_decision_page_and_an_annotator_cannot_open_it(
    page, login, candidate_in_review
):
    project, candidate, _base, task_ids = candidate_in_review

    # an annotator is refused
    login("ann", "ann-pass-123")
    refused = page.goto(f"/models/{candidate.pk}/review/")
    assert refused.status == 403
    page.context.clear_cookies()

    # the reviewer sees the evidence
    login("rev", "rev-pass-123")
    page.goto("/")
    page.click(f"[data-testid=models-{project.slug}]")
    page.click(f"[data-testid=review-{candidate.pk}]")
    expect(page.locator("[data-testid=win-rate-value]")).to_have_text("0.667")
    expect(page.locator("[data-testid=review-labels]")).to_have_text("3")
    expect(page.locator(f"[data-testid=leaderboard-row-{candidate.pk}]")).to_contain_text(
        "tiny-dpo v1"
    )
    pair = page.locator(f"[data-testid=pair-{task_ids[0]}]")
    expect(pair.locator("[data-testid=pair-candidate]")).to_have_text(
        "Knead, rest, bake loaf 0 <b>hot</b>"
    )
    expect(pair.locator("[data-testid=pair-champion]")).to_have_text("Buy loaf 0.")
    expect(page.locator("[data-testid=win-chart]")).to_have_attribute("data-drawn", "true")
    expect(page.locator("[data-testid=thresholds]")).to_contain_text("Minimum review labels: 3")

    # the round's evaluation job has not run: the page says so, and approving waits for it
    expect(page.get_by_test_id("evaluation-pending")).to_contain_text("has not finished yet")
    expect(page.get_by_test_id("evaluation-warning")).to_be_visible()
    page.fill("[data-testid=rationale]", "Wins two of three blind comparisons.")
    page.click("[data-testid=approve]")
    expect(page.locator(".message.error")).to_contain_text("evaluation_not_finished")
    candidate.refresh_from_db()
    assert candidate.state == "in_review"

    # and approves with a rationale, saying plainly it is without the evaluation
    page.fill("[data-testid=rationale]", "Wins two of three blind comparisons.")
    page.get_by_test_id("without-evaluation").check()
    page.click("[data-testid=approve]")
    page.wait_for_url(f"**/models/{candidate.pk}/")
    expect(page.locator("[data-testid=state]")).to_have_text("approved")
    candidate.refresh_from_db()
    assert candidate.state == "approved"
    assert selectors.alias_target(project=project) == candidate
    approval = AuditEvent.objects.get(version=candidate, to_state="approved")
    assert approval.evidence["review"]["evaluation"]["approved_without_it"] is True
    assert page.watch.page_errors == []
    # no script error, and the chart script ran under the CSP (no inline code was refused)
    assert not [e for e in page.watch.console_errors if "Content Security Policy" in e]


@pytest.fixture
def reward_candidate(tmp_path):
    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    User.objects.create_user("rev", password="rev-pass-123")
    project = services.project_create(name="Reward", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    services.membership_set(
        project=project, user=User.objects.get(username="rev"), role=Role.REVIEWER
    )
    return project, tiny_reward_candidate(project=project, engineer=engineer, tmp_path=tmp_path)


def test_a_reviewer_approves_a_reward_model_on_its_held_out_evidence(page, login, reward_candidate):
    project, reward = reward_candidate
    login("rev", "rev-pass-123")
    page.goto("/")
    # from Home by clicking: the project's versions, the candidate's Review button
    page.click(f"[data-testid=models-{project.slug}]")
    page.click(f"[data-testid=review-{reward.pk}]")
    # the evidence: held-out accuracy with its interval, calibration, probes, metrics as a table
    held_out = page.get_by_test_id("held-out-test")
    expect(held_out).to_contain_text("40")
    expect(held_out).to_contain_text("0.700")
    expect(held_out).to_contain_text("0.546\u20130.819")
    calibration = page.get_by_test_id("calibration-test")
    expect(calibration).to_contain_text("3 decided pairs, expected calibration error 0.344")
    expect(calibration.locator("tbody tr").nth(3)).to_contain_text("0.8\u20130.9")
    expect(page.get_by_test_id("bias-probes-test")).to_be_visible()
    metrics = page.get_by_test_id("training-metrics")
    expect(metrics).to_contain_text("test.loss")
    expect(metrics).not_to_contain_text("{")
    expect(page.get_by_test_id("evaluation-warning")).to_have_count(0)
    expect(page.get_by_test_id("approve")).to_have_text("Approve")
    # the decision
    page.fill("[data-testid=rationale]", "70% on held-out pairs, calibrated within 0.35.")
    page.click("[data-testid=approve]")
    page.wait_for_url(f"**/models/{reward.pk}/")
    expect(page.locator("[data-testid=state]")).to_have_text("approved")
    reward.refresh_from_db()
    assert reward.state == "approved"
    steps = AuditEvent.objects.filter(version=reward, action="transition").order_by("id")
    assert [(e.from_state, e.to_state) for e in steps] == [
        ("candidate", "in_review"),
        ("in_review", "approved"),
    ]
    assert page.watch.page_errors == []
    assert page.watch.console_errors == []
