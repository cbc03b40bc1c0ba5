"""Every task kind's module loads, renders and takes its own keys, with no script error."""

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label, TaskItem

from .annotate_helpers import project_with_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_task_per_kind():
    project, annotator = project_with_annotator("Kinds")
    shapes = {
        "pairwise": ["yes", "no"],
        "ranking": ["one", "two", "three"],
        "rubric": ["A short answer."],
        "correction": ["The capitol of France is Paris."],
    }
    tasks = {}
    for priority, (kind, texts) in enumerate(shapes.items()):
        tasks[kind], _ = services.task_create(
            project=project, messages=[{"role": "user", "content": f"A {kind} task"}], kind=kind,
            responses=[{"text": x, "origin": "model", "model_name": "m"} for x in texts],
            priority=10 - priority,
        )  # fmt: skip
    return project, annotator, tasks


def test_each_kind_renders_from_its_module_and_takes_its_keys(page, login, one_task_per_kind):
    project, annotator, tasks = one_task_per_kind
    scripts = {}

    def on_response(response):
        if response.request.resource_type == "script":
            scripts[response.url] = (response.status, response.headers.get("content-type", ""))

    page.on("response", on_response)
    login("ann", "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")
    task_box = page.locator("[data-testid=task]")

    # given the pairwise task, when the annotator flags it and calls both responses bad
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks['pairwise'].pk}']")
    assert task_box.get_attribute("data-kind") == "pairwise"
    page.keyboard.press("b")
    assert task_box.get_attribute("data-choice") == "both_bad"
    assert task_box.get_attribute("data-strength") == ""
    page.locator("[data-testid=flags] input[value=unsafe]").check()
    page.locator("[data-testid=submit]").click()

    # and selects the third ranked response, moves it up and ties it with the first
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks['ranking'].pk}']")
    items = page.locator("[data-testid=rank-item]")
    first, second, third = (int(items.nth(i).get_attribute("data-response-id")) for i in range(3))
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("=")
    assert task_box.get_attribute("data-order") == f"{first},{third},{second}"
    expect(page.locator("[data-testid=rank-item].tie-up")).to_have_count(1)
    page.keyboard.press("Enter")

    # and submits the rubric before scoring it, then scores each dimension by digit
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks['rubric'].pk}']")
    expect(page.locator("[data-testid=rubric] tr.rubric-row")).to_have_count(3)
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=status]")).to_have_text("Score helpfulness first.")
    assert task_box.get_attribute("data-task-id") == str(tasks["rubric"].pk)
    for digit in ("5", "3", "1"):
        page.keyboard.press(digit)
    expect(page.locator("[data-testid=rubric] input:checked")).to_have_count(3)
    page.keyboard.press("Enter")

    # and rewrites the correction
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks['correction'].pk}']")
    editor = page.locator("[data-testid=correction-editor]")
    editor.fill("The capital of France is Paris.")
    editor.press("Control+Enter")

    # then every label arrived with what each kind's module built
    page.wait_for_selector("[data-testid=no-task]")
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "0")
    labels = {label.task_id: label for label in Label.objects.filter(annotator=annotator)}
    response_of = dict(TaskItem.objects.values_list("pk", "response_id"))
    pair = labels[tasks["pairwise"].pk]
    assert (pair.payload["outcome"], pair.payload["strength"], pair.flags) == (
        "both_bad",
        None,
        ["unsafe"],
    )
    # (a tier is a set: the server stores its ids in its own order)
    tiers = labels[tasks["ranking"].pk].payload["ranking"]
    assert [set(tier) for tier in tiers] == [
        {response_of[first], response_of[third]},
        {response_of[second]},
    ]
    (rubric_response,) = tasks["rubric"].items.values_list("response_id", flat=True)
    assert labels[tasks["rubric"].pk].payload["scores"] == {
        str(rubric_response): {"helpfulness": 5, "harmlessness": 3, "honesty": 1}
    }
    assert labels[tasks["correction"].pk].payload["edit_distance"] == 1

    # and every module came as JavaScript, and nothing failed to load or run
    modules = {url.rsplit("/static/", 1)[-1] for url in scripts}
    assert {
        "frontend/dom.js",
        "frontend/annotate/main.js",
        "frontend/annotate/cards.js",
        "frontend/annotate/pairwise.js",
        "frontend/annotate/ranking.js",
        "frontend/annotate/rubric.js",
        "frontend/annotate/correction.js",
    } <= modules
    for url, (status, content_type) in scripts.items():
        assert status == 200, url
        assert content_type.split(";")[0] in ("text/javascript", "application/javascript"), url
    assert page.watch.console_errors == []
    assert page.watch.page_errors == []


def test_a_label_the_old_script_left_in_the_outbox_is_sent(page, login, one_task_per_kind):
    project, annotator, tasks = one_task_per_kind
    # given a label queued in browser storage by the single-script page (same key, same item
    # shape) for the task it had claimed, and never acknowledged
    lease = services.task_claim_next(project=project, annotator=annotator)
    assert lease.task_id == tasks["pairwise"].pk
    login("ann", "ann-pass-123")
    queued = [
        {
            "key": "0123456789abcdef0123456789abcdef",
            "taskId": lease.task_id,
            "body": {
                "payload": {"choice": "right", "strength": "strong", "rationale": "old page"},
                "flags": ["spam"],
                "duration_ms": 1234,
            },
        }
    ]
    page.evaluate(
        "([key, items]) => localStorage.setItem(key, JSON.stringify(items))",
        [f"tandem.outbox.{annotator.pk}", queued],
    )
    # when the annotator opens the annotation page
    page.goto(f"/projects/{project.pk}/annotate/")
    # then the label is sent once, and the queued task is not shown again
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "0")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{tasks['ranking'].pk}']")
    label = Label.objects.get(annotator=annotator)
    assert (label.task_id, label.payload["chosen_side"], label.payload["strength"]) == (
        tasks["pairwise"].pk,
        "right",
        "strong",
    )
    assert (label.payload["rationale"], label.flags, label.duration_ms) == (
        "old page",
        ["spam"],
        1234,
    )
    assert page.watch.page_errors == []
