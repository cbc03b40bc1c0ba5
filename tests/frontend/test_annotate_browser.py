"""An annotator works through tasks in a real browser, by keyboard and by drag."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label, TaskItem
from annotation.opaque import item_ref, task_ref
from annotation.roles import Role

XSS = '<script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2">'

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setup_project():
    User = get_user_model()
    owner = User.objects.create_user("owner", password="owner-pass", is_staff=True)
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(
        name="Browser <b>test</b>", created_by=owner, overlap=1,
        guidelines="Be **fair**. <script>window.__xss = 3</script>",
    )  # fmt: skip
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)

    def task(kind, texts, prompt, priority):
        t, _ = services.task_create(
            project=project, messages=[{"role": "user", "content": prompt}], kind=kind,
            responses=[{"text": x, "origin": "model", "model_name": "m"} for x in texts],
            priority=priority,
        )  # fmt: skip
        return t

    pair = task("pairwise", ["Paris is the capital.", XSS], f"Capital of France? {XSS}", 3)
    ranking = task("ranking", ["one", "two", "three"], "Rank these", 2)
    correction = task("correction", ["The capitol of France is Paris."], "Fix this", 1)
    return project, annotator, pair, ranking, correction


def test_annotator_labels_pairwise_by_keyboard_ranking_by_drag_and_a_correction(
    page, login, setup_project
):
    project, annotator, pair, ranking, correction = setup_project
    # given the annotator is logged in on the annotation page
    login("ann", "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")
    task_box = page.locator("[data-testid=task]")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(pair.pk)}']")

    # then the hostile prompt and response are shown as text and run nothing
    assert page.locator("[data-testid=prompt]").inner_text().count("<script>") == 1
    assert page.evaluate("window.__xss") is None

    # when they prefer the left response, strongly, with the keyboard only
    left_id = int(page.locator("[data-testid=response]").first.get_attribute("data-response-id"))
    page.keyboard.press("1")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert task_box.get_attribute("data-choice") == "left"
    assert task_box.get_attribute("data-strength") == "strong"
    page.keyboard.press("Enter")

    # and rank by dragging the last response to the top
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(ranking.pk)}']")
    items = page.locator("[data-testid=rank-item]")
    before = [int(items.nth(i).get_attribute("data-response-id")) for i in range(3)]
    items.nth(2).drag_to(items.nth(0))
    after = [int(x) for x in task_box.get_attribute("data-order").split(",")]
    assert after == [before[2], before[0], before[1]]
    page.keyboard.press("Enter")

    # and rewrite the response in the correction editor
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(correction.pk)}']")
    editor = page.locator("[data-testid=correction-editor]")
    editor.fill("The capital of France is Paris.")
    assert "capital" in page.locator("[data-testid=diff] ins").first.inner_text()
    editor.press("Control+Enter")

    # then nothing is left, every label was acknowledged, and none is waiting in the outbox
    page.wait_for_selector("[data-testid=no-task]")
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "0")
    labels = {label.task_id: label for label in Label.objects.filter(annotator=annotator)}
    assert set(labels) == {pair.pk, ranking.pk, correction.pk}
    # (the page names responses by task item ids, as refs; labels store response ids)
    response_of = {item_ref(pk): r for pk, r in TaskItem.objects.values_list("pk", "response_id")}
    pair_label = labels[pair.pk]
    assert pair_label.shown_order[0] == response_of[left_id]
    assert pair_label.payload["winner"] == response_of[left_id]
    assert (pair_label.payload["chosen_side"], pair_label.payload["strength"]) == ("left", "strong")
    assert pair_label.duration_ms is not None
    assert labels[ranking.pk].payload["ranking"] == [
        [response_of[before[2]]],
        [response_of[before[0]]],
        [response_of[before[1]]],
    ]
    assert labels[correction.pk].payload["corrected_text"] == "The capital of France is Paris."
    assert labels[correction.pk].payload["edit_distance"] == 1

    # and no script from the data ran anywhere
    assert page.evaluate("window.__xss") is None
    assert page.watch.dialogs == []
    assert page.watch.page_errors == []


def test_a_label_made_offline_is_kept_and_sent_when_back_online(page, login, setup_project):
    project, annotator, pair, _ranking, _correction = setup_project
    login("ann", "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(pair.pk)}']")
    # given the connection drops before the annotator submits
    page.context.set_offline(True)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    # then the label waits in browser storage and nothing reached the server
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "1")
    assert not Label.objects.exists()
    stored = page.evaluate(f"localStorage.getItem('tandem.outbox.{annotator.pk}')")
    assert '"choice":"right"' in stored
    # when the connection returns, then the same label is stored exactly once
    page.context.set_offline(False)
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute(
        "data-pending", "0", timeout=20_000
    )
    label = Label.objects.get(annotator=annotator)
    assert (label.task_id, label.payload["chosen_side"]) == (pair.pk, "right")


def test_help_opens_with_question_mark(page, login, setup_project):
    project, *_ = setup_project
    login("ann", "ann-pass-123")
    page.goto(f"/projects/{project.pk}/annotate/")
    page.wait_for_selector("[data-testid=task][data-task-id]")
    assert page.locator("[data-testid=help]").is_hidden()
    page.keyboard.press("?")
    assert page.locator("[data-testid=help]").is_visible()


def test_csp_header_is_enforcing(page, login, setup_project):
    project, *_ = setup_project
    login("ann", "ann-pass-123")
    response = page.goto(f"/projects/{project.pk}/annotate/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "content-security-policy-report-only" not in response.headers
    assert page.evaluate("window.__xss") is None
