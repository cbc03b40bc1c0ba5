"""Steps and checks the annotator-page browser tests share."""

from annotation.models import Label


def open_page(page, login, project):
    login("ann", "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")


def label_by_keyboard(page, task, choice_key="1"):
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task.pk}']")
    page.keyboard.press(choice_key)
    page.keyboard.press("Enter")


def pending(page):
    return page.locator("[data-testid=outbox-status]")


def stored_task_ids(annotator):
    return sorted(Label.objects.filter(annotator=annotator).values_list("task_id", flat=True))


def page_errors(page):
    """Script errors and console errors, less the browser's own line for a failed request
    (a 403 or a 500 the test provoked on purpose)."""
    console = [e for e in page.watch.console_errors if "Failed to load resource" not in e]
    return page.watch.page_errors + console
