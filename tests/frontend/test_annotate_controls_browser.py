"""Every control on the annotator's page does what it says: Enter submits after a mouse click,
Escape closes the help, the empty queue says why and leads home, and the controls are reached
by keyboard and announced to screen readers."""

import pytest
from playwright.sync_api import expect

from annotation.models import Label

from .annotate_helpers import open_page, page_errors, pending, stored_task_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_enter_after_clicking_a_choice_submits_the_label(page, login, pairwise_project):
    project, annotator, tasks = pairwise_project
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks[0].pk}']")
    # given the annotator clicks "2 · Right is better" and then a strength, with the mouse
    page.click("button[data-choice=right]")
    page.click("button[data-strength=strong]")
    # when they press Enter, as the submit button says
    page.keyboard.press("Enter")
    # then the label is submitted, once, and the next task shows
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks[1].pk}']")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    label = Label.objects.get(annotator=annotator)
    assert (label.task_id, label.payload["chosen_side"], label.payload["strength"]) == (
        tasks[0].pk,
        "right",
        "strong",
    )
    # and Enter on the focused submit button submits exactly once too
    page.click("button[data-choice=left]")
    page.focus("[data-testid=submit]")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks[2].pk}']")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert stored_task_ids(annotator) == sorted(t.pk for t in tasks[:2])
    assert page_errors(page) == []
