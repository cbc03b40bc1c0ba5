"""The adjudication form in Chromium: a ranking is ordered with the annotator's control (keys
and drag), a rubric task is scored per dimension, a correction's final text is picked from the
rewrites (each with its diff against the original) and edited, and each decision is stored as
the snapshot path reads it (``Adjudication.payload`` in canonical form)."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.explorer.services import tasks_bulk_apply
from annotation.labels import canonical_correction
from annotation.models import Label, Project, Task, TaskStatus
from annotation.opaque import item_ref
from annotation.quality.models import Adjudication
from annotation.roles import Role

from .annotate_helpers import page_errors

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def disputed_task(kind, texts, payloads):
    """A project with a reviewer ("rev") and one ``kind`` task over ``texts`` whose labels
    (one per payload, built from the response ids) disagree."""
    User = get_user_model()
    owner = User.objects.create_user("owner", password="owner-pass")
    reviewer = User.objects.create_user("rev", password="rev-pass-123")
    project = services.project_create(name="Review", created_by=owner, overlap=len(payloads))
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    task, _ = services.task_create(
        project=project, messages=[{"role": "user", "content": f"A {kind} task"}], kind=kind,
        responses=[{"text": t, "origin": "model", "model_name": "m"} for t in texts],
    )  # fmt: skip
    ids = list(task.items.order_by("position").values_list("response_id", flat=True))
    for n, make in enumerate(payloads):
        annotator = User.objects.create_user(f"ann{n}", password="pw")
        Label.objects.create(task=task, annotator=annotator, kind=kind, payload=make(ids))
    # the task is done (a task still open is sealed from review: nothing of it is shown)
    Task.objects.filter(pk=task.pk).update(label_count=len(payloads), status=TaskStatus.DONE)
    return project, task, ids


def shown_ids(task) -> dict[int, int]:
    """response id -> the id the review page names it by (its task item's ref)."""
    return {rid: item_ref(pk) for pk, rid in task.items.values_list("pk", "response_id")}


def open_review(page, login, task):
    login("rev", "rev-pass-123")
    page.goto(f"/tasks/{task.pk}/review/")
    page.wait_for_selector("[data-testid=rank-item], [data-testid=rubric-response]")


def test_a_ranking_is_adjudicated_with_keys_and_drag(page, login):
    # given a ranking task two annotators ordered differently
    project, task, (one, two, three) = disputed_task(
        "ranking", ["first answer", "second answer", "third answer"],
        [lambda ids: {"ranking": [[ids[0]], [ids[1]], [ids[2]]]},
         lambda ids: {"ranking": [[ids[2]], [ids[1]], [ids[0]]]}],
    )  # fmt: skip
    stored_as = {v: k for k, v in shown_ids(task).items()}
    one, two, three = (shown_ids(task)[r] for r in (one, two, three))
    open_review(page, login, task)
    items = page.locator("[data-testid=ranking-control] [data-testid=rank-item]")
    expect(items).to_have_count(3)
    control = page.locator("[data-testid=ranking-control]")
    expect(control).to_have_attribute("data-order", f"{one},{two},{three}")

    # when the reviewer selects the third with its key and moves it to the top with ↑ ↑
    items.nth(0).focus()
    page.keyboard.press("3")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(control).to_have_attribute("data-order", f"{three},{one},{two}")
    # and drags the last one above the second, then ties it with the one above ("=")
    page.locator(f"[data-testid=rank-item][data-response-id='{two}']").drag_to(
        page.locator(f"[data-testid=rank-item][data-response-id='{one}']")
    )
    expect(control).to_have_attribute("data-order", f"{three},{two},{one}")
    page.locator(f"[data-testid=rank-item][data-response-id='{one}']").focus()
    page.keyboard.press("=")
    # typing digits in the reason does not move the ranking
    page.fill("textarea[name=reason]", "3 is the only correct one; 1 and 2 are equally vague")
    page.locator("[data-testid=adjudicate-form] button[type=submit]").click()

    # then the decision is stored as tiers, best first, and the task leaves the queue page
    page.wait_for_url(f"**/projects/{project.pk}/review/")
    adjudication = Adjudication.objects.get(task=task)
    assert adjudication.payload["ranking"] == [
        [stored_as[three]],
        sorted([stored_as[two], stored_as[one]]),
    ]
    assert adjudication.reason.startswith("3 is the only correct one")
    assert page_errors(page) == []


def test_a_refused_ranking_changes_nothing_and_says_why(page, login):
    # given the ranking form, when the hidden field is emptied of its tiers before submit
    _, task, _ = disputed_task(
        "ranking", ["a", "b", "c"],
        [lambda ids: {"ranking": [[ids[0]], [ids[1]], [ids[2]]]},
         lambda ids: {"ranking": [[ids[2]], [ids[1]], [ids[0]]]}],
    )  # fmt: skip
    open_review(page, login, task)
    page.fill("textarea[name=reason]", "because")
    page.evaluate(
        """() => {
          const form = document.querySelector('[data-testid=adjudicate-form]');
          form.addEventListener('submit', () => {
            form.querySelector('input[name=ranking]').value = "[[999999]]";
          });
        }"""
    )
    page.locator("[data-testid=adjudicate-form] button[type=submit]").click()

    # then the page says what is wrong and nothing is stored
    expect(page.locator(".messages .message").first).to_contain_text("ranking")
    assert not Adjudication.objects.filter(task=task).exists()


def test_a_rubric_task_is_adjudicated_one_score_per_dimension(page, login):
    # given a rubric task two annotators scored apart
    low = {"helpfulness": 1, "harmlessness": 2, "honesty": 3}
    high = {"helpfulness": 5, "harmlessness": 5, "honesty": 4}
    project, task, (first, second) = disputed_task(
        "rubric", ["A kind, correct answer.", "A rude one."],
        [lambda ids: {"scores": {str(ids[0]): high, str(ids[1]): low}},
         lambda ids: {"scores": {str(ids[0]): low, str(ids[1]): high}}],
    )  # fmt: skip
    open_review(page, login, task)
    forms = page.locator("[data-testid=rubric-response]")
    expect(forms).to_have_count(2)

    # when the reviewer scores every dimension of both answers and gives a reason
    decided = {first: {"helpfulness": 5, "harmlessness": 4, "honesty": 5},
               second: {"helpfulness": 2, "harmlessness": 1, "honesty": 3}}  # fmt: skip
    for response_id, dims in decided.items():
        for name, value in dims.items():
            ref = shown_ids(task)[response_id]
            page.check(f"input[name='score-{ref}-{name}'][value='{value}']")
    page.fill("textarea[name=reason]", "The second answer insults the user.")
    page.locator("[data-testid=adjudicate-form] button[type=submit]").click()

    # then the scores are stored as the rubric label payload, and the queue page is shown
    page.wait_for_url(f"**/projects/{project.pk}/review/")
    adjudication = Adjudication.objects.get(task=task)
    assert adjudication.payload["scores"] == {str(k): v for k, v in decided.items()}
    assert page_errors(page) == []


def rewrite(original: str, text: str):
    """A correction label's payload of ``original`` rewritten as ``text`` (canonical form)."""
    return lambda ids: canonical_correction(
        {"corrected_text": text}, item_ids=ids, texts={ids[0]: original}
    )


def test_a_correction_is_opened_from_the_queue_and_decided_with_keys_and_an_edit(page, login):
    # given a correction task two annotators rewrote differently, sent to adjudication
    original = "The capitol of France is Paris."
    project, task, _ = disputed_task(
        "correction", [original],
        [rewrite(original, "The capital of France is Paris."),
         rewrite(original, "Paris is the capital of France.")],
    )  # fmt: skip
    owner = Project.objects.get(pk=project.pk).created_by
    tasks_bulk_apply(project=project, by=owner, action="send_to_adjudication", task_ids=[task.pk])

    # when the reviewer opens it from the review queue by clicking
    login("rev", "rev-pass-123")
    page.goto(f"/projects/{project.pk}/review/")
    page.locator("[data-testid=review-queue] a:has-text('Review')").click()
    page.wait_for_url(f"**/tasks/{task.pk}/review/")

    # then each rewrite is shown with its diff against the original
    diffs = page.get_by_test_id("rewrite-diff")
    expect(diffs).to_have_count(2)
    expect(diffs.nth(0).locator("del")).to_have_text("capitol")
    expect(diffs.nth(0).locator("ins")).to_have_text("capital")
    editor = page.get_by_test_id("correction-final")
    final_diff = page.get_by_test_id("final-diff")

    # when, with a choice focused, 2 picks the second rewrite and 0 the original
    page.get_by_test_id("pick-rewrite").first.focus()
    page.keyboard.press("2")
    expect(editor).to_have_value("Paris is the capital of France.")
    page.keyboard.press("0")
    expect(editor).to_have_value(original)
    expect(final_diff.locator("ins, del")).to_have_count(0)
    # and 1 picks the first rewrite, which the reviewer then edits
    page.keyboard.press("1")
    expect(editor).to_have_value("The capital of France is Paris.")
    expect(page.locator("input[name=start]:checked")).to_have_value("1")
    editor.press("End")
    editor.type(" It lies on the Seine.")
    expect(page.locator("input[name=start]:checked")).to_have_count(0)
    expect(final_diff.locator("ins")).to_contain_text(["capital", "Seine."])
    page.fill("textarea[name=reason]", "The first fixes the spelling; the river helps.")
    editor.press("Control+Enter")

    # then the reviewer's text is stored as the correction and the queue no longer lists it
    page.wait_for_url(f"**/projects/{project.pk}/review/")
    expect(page.get_by_test_id("review-queue")).to_contain_text("Nothing to review.")
    decided = Adjudication.objects.get(task=task).payload
    assert decided["corrected_text"] == "The capital of France is Paris. It lies on the Seine."
    assert decided["unchanged"] is False
    assert page_errors(page) == []
