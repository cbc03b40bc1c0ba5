"""An annotator's first day, from the home page by clicking only: every task kind, a label made
offline and sent when back, undo of the last submit, the help, the empty queue and the way
home, their own labels. axe runs on every page and state visited; no console error, no
failed request."""

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label
from annotation.opaque import task_ref

from .annotate_helpers import label_by_keyboard, pending, project_with_annotator
from .walk import Walk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def every_kind():
    """Three pairwise tasks first, then one ranking, one rubric and one correction task."""
    project, annotator = project_with_annotator("First day")
    shapes = [
        ("pairwise", ["Boil it for ten minutes.", "Fry it."]),
        ("pairwise", ["Paris.", "Lyon."]),
        ("pairwise", ["Blue, by Rayleigh scattering.", "Green."]),
        ("ranking", ["one", "two", "three"]),
        ("rubric", ["A short answer."]),
        ("correction", ["The capitol of France is Paris."]),
    ]
    tasks = []
    for n, (kind, texts) in enumerate(shapes):
        task, _ = services.task_create(
            project=project, messages=[{"role": "user", "content": f"A {kind} question {n}?"}],
            kind=kind, priority=100 - n,
            responses=[{"text": x, "origin": "model", "model_name": "m"} for x in texts],
        )  # fmt: skip
        tasks.append(task)
    return project, annotator, tasks


def _claim_leaving_out(response, task) -> bool:
    """Whether ``response`` answers a claim of the next task made while ``task`` is shown."""
    if not response.url.endswith("/tasks/next/") or response.request.method != "POST":
        return False
    exclude = (response.request.post_data_json or {}).get("exclude", [])
    return str(task_ref(task.pk)) in {str(ref) for ref in exclude}


def _task_shown(page, task):
    return page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(task.pk)}']")


def test_an_annotator_walks_every_kind_offline_and_back_from_home(page, every_kind):
    project, annotator, tasks = every_kind
    walk = Walk(page)
    page.goto("/")  # the only typed address: the app sends a stranger to its login page
    walk.arrive("**/login/?next=/", "input[name=username]")
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "ann-pass-123")
    walk.click("button[type=submit]", "**/", f"[data-testid=project-{project.slug}]")

    # Home → Annotate
    walk.click(
        f"[data-testid=project-{project.slug}] a:has-text('Annotate')",
        f"**/projects/{project.pk}/annotate/",
        f"[data-testid=task][data-task-id='{task_ref(tasks[0].pk)}']",
    )
    expect(page.locator("h1")).to_have_text(f"Annotate · {project.name}")

    # pairwise with the mouse, then Enter
    page.locator("button[data-choice=left]").click()
    expect(page.locator("button[data-choice=left]")).to_have_attribute("aria-pressed", "true")
    walk.check("the annotate page, a choice pressed")
    # (and the page preloads the task after the next one: the claim that leaves out tasks[1])
    with page.expect_response(lambda r: _claim_leaving_out(r, tasks[1])):
        page.keyboard.press("Enter")

    # two pairwise labels made offline, sent once when the connection returns
    _task_shown(page, tasks[1])
    walk.set_offline(True)
    label_by_keyboard(page, tasks[1], "2")
    label_by_keyboard(page, tasks[2], "0")
    expect(page.locator("[data-testid=connection]")).to_contain_text("Offline")
    expect(pending(page)).to_have_attribute("data-pending", "2")
    walk.check("the annotate page, offline")
    walk.set_offline(False)

    # ranking: select the third, move it up, submit
    _task_shown(page, tasks[3])
    expect(pending(page)).to_have_attribute("data-pending", "0")
    expect(page.locator("[data-testid=connection]")).to_be_hidden()
    walk.check("a ranking task")
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")

    # rubric: one score per dimension
    _task_shown(page, tasks[4])
    walk.check("a rubric task")
    for digit in ("5", "4", "5"):
        page.keyboard.press(digit)
    page.keyboard.press("Enter")

    # correction: rewrite and send
    _task_shown(page, tasks[5])
    walk.check("a correction task")
    editor = page.locator("[data-testid=correction-editor]")
    editor.fill("The capital of France is Paris.")

    editor.press("Control+Enter")
    page.wait_for_selector("[data-testid=no-task]")

    # the last submit is undone: the correction comes back, and is sent again
    expect(pending(page)).to_have_attribute("data-pending", "0")
    expect(page.get_by_test_id("undo-text")).to_have_text(
        f"Task {task_ref(tasks[5].pk)} submitted."
    )
    walk.check("the undo offer")
    page.get_by_test_id("undo").click()
    _task_shown(page, tasks[5])
    expect(page.get_by_test_id("status")).to_contain_text("your label was withdrawn")
    assert not Label.objects.filter(annotator=annotator, task=tasks[5]).exists()
    editor = page.locator("[data-testid=correction-editor]")
    editor.fill("The capital of France is Paris.")
    editor.press("Control+Enter")
    page.wait_for_selector("[data-testid=no-task]")

    # the help opens over the empty queue, is checked, and closes with Escape
    page.keyboard.press("?")
    expect(page.locator("[data-testid=help]")).to_be_visible()
    walk.check("the keyboard help")
    page.keyboard.press("Escape")
    expect(page.locator("[data-testid=help]")).to_be_hidden()

    # the empty queue agrees with the count of open tasks, and leads home
    expect(page.locator("[data-testid=remaining-count]")).to_have_text("0")
    walk.check("the empty queue")
    expect(pending(page)).to_have_attribute("data-pending", "0")
    assert sorted(Label.objects.filter(annotator=annotator).values_list("task_id", flat=True)) == [
        t.pk for t in sorted(tasks, key=lambda t: t.pk)
    ]
    walk.click("[data-testid=home-link]", "**/", f"[data-testid=project-{project.slug}]")
    expect(page.locator(f"[data-testid=project-{project.slug}]")).to_contain_text("you labelled 6")

    # Home → My labels → the correction just made
    walk.click("[data-testid=my-labels-link]", "**/labels/", "[data-testid=label-list]")
    expect(page.locator("[data-testid=label-row]")).to_have_count(6)
    walk.click("[data-testid=label-row][data-kind=correction] a", "**/labels/*/", "h1")
    # Home (brand) → account
    walk.home()
    walk.click("[data-testid=account-link]", "**/account/", "h1")
    walk.home()

    assert walk.visited == [
        "/login/",
        "/",
        f"/projects/{project.pk}/annotate/",
        "/",
        "/labels/",
        f"/labels/{Label.objects.get(task=tasks[5]).pk}/",
        "/",
        "/account/",
        "/",
    ]
    assert walk.offline_failures, "the walk never tried the network while offline"
    walk.assert_clean()
