"""Undo on the annotator's page: the last submit (U) or skip (the button) comes back on screen
within the window, the label is withdrawn on the server; too late, the page says why."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from annotation.models import Label, Lease, LeaseState
from annotation.opaque import task_ref

from .annotate_helpers import label_by_keyboard, open_page, page_errors, pending

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _on_screen(page, task):
    return page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(task.pk)}']")


def test_undo_brings_back_the_last_submit_and_the_last_skip(page, login, pairwise_project):
    project, annotator, tasks = pairwise_project
    open_page(page, login, project)
    # given a submitted label (left is better)
    label_by_keyboard(page, tasks[0], "1")
    _on_screen(page, tasks[1])
    expect(pending(page)).to_have_attribute("data-pending", "0")
    expect(page.get_by_test_id("undo-text")).to_have_text(
        f"Task {task_ref(tasks[0].pk)} submitted."
    )
    assert Label.objects.filter(annotator=annotator, task=tasks[0]).exists()
    # when the annotator presses U
    page.keyboard.press("u")
    # then the task is back on screen, its label withdrawn, and the undo offer gone
    _on_screen(page, tasks[0])
    expect(page.get_by_test_id("status")).to_contain_text("your label was withdrawn")
    expect(page.get_by_test_id("undo-bar")).to_be_hidden()
    assert not Label.objects.filter(annotator=annotator).exists()
    # and a new answer is stored in its place, then the task that was showing comes next
    label_by_keyboard(page, tasks[0], "2")
    _on_screen(page, tasks[1])
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert Label.objects.get(annotator=annotator, task=tasks[0]).payload["chosen_side"] == "right"

    # given a skip; when the annotator clicks Undo; then the skipped task is back
    page.keyboard.press("s")
    _on_screen(page, tasks[2])
    expect(page.get_by_test_id("undo-text")).to_have_text(f"Task {task_ref(tasks[1].pk)} skipped.")
    page.get_by_test_id("undo").click()
    _on_screen(page, tasks[1])
    assert Lease.objects.get(annotator=annotator, task=tasks[1]).state == LeaseState.ACTIVE
    assert page_errors(page) == []


def test_an_undo_too_late_is_refused_with_the_reason(page, login, pairwise_project):
    project, annotator, tasks = pairwise_project
    open_page(page, login, project)
    label_by_keyboard(page, tasks[0], "1")
    _on_screen(page, tasks[1])
    expect(pending(page)).to_have_attribute("data-pending", "0")
    # the label is older than the window by the time the annotator asks
    Label.objects.filter(annotator=annotator).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("status")).to_have_text(
        "Cannot undo: the 120 seconds to undo this label have passed."
    )
    expect(page.get_by_test_id("undo-bar")).to_be_hidden()
    assert Label.objects.filter(annotator=annotator, task=tasks[0]).exists()
    expect(page.locator("[data-testid=task]")).to_have_attribute(
        "data-task-id", str(task_ref(tasks[1].pk))
    )
