"""Steps and checks the annotator-page browser tests share."""

from django.contrib.auth import get_user_model

from annotation import services
from annotation.models import Label
from annotation.roles import Role


def project_with_annotator(name: str):
    """A project (overlap 1) owned by "owner", with "ann" (password "ann-pass-123") annotating."""
    User = get_user_model()
    owner = User.objects.create_user("owner", password="owner-pass", is_staff=True)
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(name=name, created_by=owner, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    return project, annotator


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
