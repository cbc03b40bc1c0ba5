"""Every control on the annotator's page does what it says: Enter submits after a mouse click,
Escape closes the help, the empty queue says why and leads home, and the controls are reached
by keyboard and announced to screen readers."""

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label
from annotation.opaque import task_ref

from .annotate_helpers import label_by_keyboard, open_page, page_errors, pending, stored_task_ids

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_enter_after_clicking_a_choice_submits_the_label(page, login, pairwise_project):
    project, annotator, tasks = pairwise_project
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[0].pk)}']")
    # given the annotator clicks "2 · Right is better" and then a strength, with the mouse
    page.click("button[data-choice=right]")
    page.click("button[data-strength=strong]")
    # when they press Enter, as the submit button says
    page.keyboard.press("Enter")
    # then the label is submitted, once, and the next task shows
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[1].pk)}']")
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
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[2].pk)}']")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert stored_task_ids(annotator) == sorted(t.pk for t in tasks[:2])
    assert page_errors(page) == []


def test_help_closes_with_escape_and_with_its_close_button(page, login, pairwise_project):
    project, _annotator, _tasks = pairwise_project
    open_page(page, login, project)
    page.wait_for_selector("[data-testid=task][data-task-id]")
    help_box = page.locator("[data-testid=help]")
    page.keyboard.press("?")
    expect(help_box).to_be_visible()
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()
    page.keyboard.press("?")
    expect(help_box).to_be_visible()
    help_box.locator("[data-testid=help-close]").click()
    expect(help_box).to_be_hidden()


def test_the_page_has_a_heading_and_announces_pressed_buttons(page, login, pairwise_project):
    project, _annotator, _tasks = pairwise_project
    open_page(page, login, project)
    page.wait_for_selector("[data-testid=task][data-task-id]")
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("h1")).to_contain_text(project.name)
    choices = page.locator("button[data-choice]")
    for i in range(choices.count()):
        expect(choices.nth(i)).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("2")
    expect(page.locator("button[data-choice=right]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("button[data-choice=left]")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("button[data-strength=clear]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("ArrowUp")
    expect(page.locator("button[data-strength=strong]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("button[data-strength=clear]")).to_have_attribute("aria-pressed", "false")


def test_ranking_items_are_reached_and_moved_with_the_keyboard(page, login, pairwise_project):
    project, _annotator, _tasks = pairwise_project
    ranking, _ = services.task_create(
        project=project, messages=[{"role": "user", "content": "Rank"}], kind="ranking",
        priority=100, responses=[{"text": t, "origin": "model", "model_name": "m"} for t in "xyz"],
    )  # fmt: skip
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(ranking.pk)}']")
    task_box = page.locator("[data-testid=task]")
    before = task_box.get_attribute("data-order").split(",")
    # when the annotator tabs to the first response and moves it down
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.testid") == "rank-item":
            break
    assert page.evaluate("document.activeElement.dataset.testid") == "rank-item"
    focused = page.evaluate("document.activeElement.dataset.responseId")
    page.keyboard.press("ArrowDown")
    # then it moved one place down, and keeps the focus
    after = task_box.get_attribute("data-order").split(",")
    assert after.index(focused) == before.index(focused) + 1
    assert page.evaluate("document.activeElement.dataset.responseId") == focused


def test_the_empty_queue_says_why_and_leads_home(page, login, pairwise_project):
    project, annotator, tasks = pairwise_project
    # given another annotator holds two of the three tasks
    other = type(annotator).objects.create_user("other", password="other-pass-123")
    services.membership_set(project=project, user=other, role="annotator")
    first = services.task_claim_next(project=project, annotator=other)
    second = services.task_claim_next(
        project=project, annotator=other, exclude_task_ids=[first.task_id]
    )
    held = [first, second]
    mine = next(t for t in tasks if t.pk not in {lease.task_id for lease in held})
    open_page(page, login, project)
    # when the annotator labels the one left
    label_by_keyboard(page, mine)
    # then the page says why there is nothing more, and links home
    empty = page.locator("[data-testid=no-task]")
    expect(empty).to_contain_text("2 tasks are still open")
    expect(empty).to_contain_text("held by other annotators")
    expect(empty.locator("a[data-testid=home-link]")).to_have_attribute("href", "/")
    expect(page.locator("[data-testid=remaining-count]")).to_have_text("2")


def test_only_the_flags_the_project_allows_are_offered(page, login, pairwise_project):
    # given a project that lets annotators flag unsafe answers and spam, not personal data
    project, annotator, tasks = pairwise_project
    services.project_settings_update(
        project=project, changes={"flags": {"allowed": ["unsafe", "spam"]}}
    )
    # when the annotator opens a task
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[0].pk)}']")
    # then the page offers exactly those two flags, and a flagged label is stored with them
    boxes = page.locator("[data-testid=flags] input[type=checkbox]")
    expect(boxes).to_have_count(2)
    assert [boxes.nth(i).get_attribute("value") for i in range(2)] == ["unsafe", "spam"]
    page.locator("[data-testid=flags] input[value=spam]").check()
    page.click("button[data-choice=left]")
    page.click("[data-testid=submit]")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[1].pk)}']")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert Label.objects.get(annotator=annotator).flags == ["spam"]
    assert page_errors(page) == []


def test_a_project_that_allows_no_flag_shows_no_flag_box(page, login, pairwise_project):
    project, _annotator, tasks = pairwise_project
    services.project_settings_update(project=project, changes={"flags": {"allowed": []}})
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(tasks[0].pk)}']")
    expect(page.locator("[data-testid=flags]")).to_have_count(0)
