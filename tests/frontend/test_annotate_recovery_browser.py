"""The annotator's page recovers by itself when the connection comes back: no reload needed."""

import pytest
from playwright.sync_api import expect

from .annotate_helpers import label_by_keyboard, open_page, page_errors, pending, stored_task_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_after_two_labels_made_offline_the_page_loads_the_next_task_when_back_online(
    page, login, pairwise_project
):
    project, annotator, tasks = pairwise_project
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks[0].pk}']")
    # given the connection drops and the annotator submits twice
    page.context.set_offline(True)
    label_by_keyboard(page, tasks[0])
    label_by_keyboard(page, tasks[1])
    # then the page says it is offline and keeps both labels
    connection = page.locator("[data-testid=connection]")
    expect(connection).to_contain_text("Offline — labels are kept and will be sent")
    expect(pending(page)).to_have_attribute("data-pending", "2")

    # when the connection returns
    page.context.set_offline(False)

    # then both labels are stored exactly once, the next task shows, and keys work again
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks[2].pk}']", timeout=30_000)
    expect(pending(page)).to_have_attribute("data-pending", "0")
    expect(connection).to_be_hidden()
    assert stored_task_ids(annotator) == sorted(t.pk for t in tasks[:2])
    label_by_keyboard(page, tasks[2])
    page.wait_for_selector("[data-testid=no-task]")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert stored_task_ids(annotator) == sorted(t.pk for t in tasks)
    assert "Failed to fetch" not in page.locator("[data-testid=status]").inner_text()
    assert page_errors(page) == []
