"""A reviewer decides on a candidate in a real browser (strict CSP); an annotator cannot."""

import pytest
from playwright.sync_api import expect

from models_registry import selectors

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

    # and approves with a rationale
    page.fill("[data-testid=rationale]", "Wins two of three blind comparisons.")
    page.click("[data-testid=approve]")
    page.wait_for_url(f"**/models/{candidate.pk}/")
    expect(page.locator("[data-testid=state]")).to_have_text("approved")
    candidate.refresh_from_db()
    assert candidate.state == "approved"
    assert selectors.alias_target(project=project) == candidate
    assert page.watch.page_errors == []
    # no script error, and the chart script ran under the CSP (no inline code was refused)
    assert not [e for e in page.watch.console_errors if "Content Security Policy" in e]
