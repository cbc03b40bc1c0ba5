"""A reviewer's first day, from the home page by clicking only: decide on a policy candidate
with its evidence, find the decision in the audit log, see the leaderboard, the quality
dashboard and the adjudication queue; decide on a reward model with its held-out evidence.
axe runs on every page; no console error, no failed request."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from models_registry import selectors

from .conftest import tiny_reward_candidate
from .walk import Walk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_decides_a_policy_then_reads_the_audit_log_and_leaderboard(
    page, login, candidate_in_review, tmp_path
):
    project, candidate, base, _task_ids = candidate_in_review
    reward = tiny_reward_candidate(
        project=project, engineer=get_user_model().objects.get(username="eng"), tmp_path=tmp_path
    )
    walk = Walk(page)
    login("rev", "rev-pass-123")
    walk.arrive("**/", f"[data-testid=project-{project.slug}]")

    # Home → Model versions → Review → the decision page, with its evidence drawn
    walk.click(f"[data-testid=models-{project.slug}]", f"**/models/projects/{project.pk}/", "h1")
    walk.click(
        f"[data-testid=review-{candidate.pk}]",
        f"**/models/{candidate.pk}/review/",
        "[data-testid=win-chart][data-drawn=true]",
    )
    expect(page.locator("[data-testid=win-rate-value]")).to_have_text("0.667")

    # approve with a rationale, saying plainly it is without the evaluation (its job has not
    # run) → the version page says so
    expect(page.get_by_test_id("evaluation-pending")).to_contain_text("has not finished yet")
    page.fill("[data-testid=rationale]", "Wins two of three blind comparisons.")
    page.get_by_test_id("without-evaluation").check()
    walk.click("[data-testid=approve]", f"**/models/{candidate.pk}/", "[data-testid=state]")
    expect(page.locator("[data-testid=state]")).to_have_text("approved")
    assert selectors.alias_target(project=project) == candidate

    # → the audit log, filtered to this version; then only the reviewer's own events
    walk.click("[data-testid=link-audit]", f"**/models/projects/{project.pk}/audit/?version=*")
    expect(page.locator("[data-testid=audit-table]")).to_contain_text("Wins two of three")
    page.select_option("[data-testid=filter-actor]", "rev")
    walk.click("[data-testid=filter-submit]", "**/audit/?*actor=rev*", "[data-testid=audit-table]")
    rows = page.locator("[data-testid=audit-table] tbody tr")
    expect(rows.first).to_contain_text("rev")
    for text in rows.all_inner_texts():
        assert "\trev\t" in text, text

    # → the leaderboard: both versions, the approved candidate first
    walk.click("nav.nav a:has-text('Leaderboard')", f"**/models/projects/{project.pk}/leaderboard/")
    first = page.locator("[data-testid=leaderboard-table] tbody tr").first
    expect(first).to_contain_text(candidate.label)
    expect(page.locator("[data-testid=leaderboard-table] tbody tr")).to_have_count(2)
    expect(page.locator("[data-testid=leaderboard-table]")).to_contain_text(base.label)

    # → Model versions → the reward model's decision page: its held-out evidence; approve
    walk.click("nav.nav a:has-text('Model versions')", f"**/models/projects/{project.pk}/", "h1")
    walk.click(
        f"[data-testid=review-{reward.pk}]",
        f"**/models/{reward.pk}/review/",
        "[data-testid=held-out-test]",
    )
    expect(page.get_by_test_id("held-out-test")).to_contain_text("0.700")
    page.fill("[data-testid=rationale]", "70% on held-out pairs, calibrated within 0.35.")
    walk.click("[data-testid=approve]", f"**/models/{reward.pk}/", "[data-testid=state]")
    expect(page.locator("[data-testid=state]")).to_have_text("approved")

    # Home → Quality, Home → Adjudicate
    walk.home()
    walk.click(
        f"[data-testid=project-{project.slug}] a:has-text('Quality')",
        f"**/projects/{project.pk}/quality/",
        "h1",
    )
    walk.home()
    walk.click(
        f"[data-testid=project-{project.slug}] a:has-text('Adjudicate')",
        f"**/projects/{project.pk}/review/",
        "[data-testid=review-queue]",
    )

    assert walk.visited == [
        "/",
        f"/models/projects/{project.pk}/",
        f"/models/{candidate.pk}/review/",
        f"/models/{candidate.pk}/",
        f"/models/projects/{project.pk}/audit/",
        f"/models/projects/{project.pk}/audit/",
        f"/models/projects/{project.pk}/leaderboard/",
        f"/models/projects/{project.pk}/",
        f"/models/{reward.pk}/review/",
        f"/models/{reward.pk}/",
        "/",
        f"/projects/{project.pk}/quality/",
        "/",
        f"/projects/{project.pk}/review/",
    ]
    walk.assert_clean()
