"""In a real browser: a person confirms, edits and rejects a model's proposals by keyboard;
and the reward model's preference appears only after the label is saved (never in the DOM
or on the wire before)."""

import json

import pytest
from playwright.sync_api import expect

from annotation import services
from annotation.models import (
    Lease,
    Prompt,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Response,
    TaskKind,
)
from annotation.opaque import task_ref
from rlhf.models import TaskSelectionScore

from .annotate_helpers import open_page, page_errors, project_with_annotator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def proposals():
    project, annotator = project_with_annotator("Proposals")
    source = Prompt.objects.create(
        project=project,
        messages=[{"role": "user", "content": "How do I boil an egg?"}],
        content_hash="egg",
    )
    variants = services.proposals_store(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        model_name="policy@v2",
        proposals=[
            {"prompt_id": source.pk, "text": text, "generation": {"seed": i}}
            for i, text in enumerate(
                ["What is the way to boil an egg?", "Egg boiling: how?", "Tell me about eggs."]
            )
        ],
    )
    rejected = Response.objects.create(
        prompt=source, text="Eggs? No idea.", content_hash="no-idea", origin="model"
    )
    (correction,) = services.proposals_store(
        project=project,
        kind=ProposalKind.CORRECTION,
        model_name="policy@v2",
        proposals=[
            {
                "prompt_id": source.pk,
                "response_id": rejected.pk,
                "text": "Boil it for nine minutes.",
                "generation": {"seed": 0},
            }
        ],
    )
    return project, annotator, source, variants, correction


def wait_for(page, proposal):
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(proposal.task_id)}']")


def test_confirm_edit_and_reject_by_keyboard(page, login, proposals):
    project, annotator, source, (keep, edit, drop), correction = proposals
    scripts = []
    page.on(
        "response",
        lambda r: scripts.append(r.url) if r.request.resource_type == "script" else None,
    )
    open_page(page, login, project)
    task_box = page.locator("[data-testid=task]")

    # the first variant: shown beside its source prompt, confirmed with C then Enter
    wait_for(page, keep)
    assert task_box.get_attribute("data-kind") == "confirm"
    expect(page.locator("[data-testid=prompt]")).to_contain_text("How do I boil an egg?")
    expect(page.locator("[data-testid=proposal]")).to_have_text("What is the way to boil an egg?")
    expect(page.locator("[data-testid=confirm-editor]")).to_be_hidden()
    assert "policy@v2" not in page.content()
    page.keyboard.press("c")
    assert task_box.get_attribute("data-decision") == "confirm"
    page.keyboard.press("Enter")

    # the second: E opens the editor on the proposal, focused; Ctrl+Enter submits the edit
    wait_for(page, edit)
    page.keyboard.press("e")
    editor = page.locator("[data-testid=confirm-editor]")
    expect(editor).to_be_visible()
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Egg boiling: how?")  # the "e" did not type into it
    page.keyboard.press("Control+a")
    page.keyboard.type("How long should an egg boil?")
    page.keyboard.press("Control+Enter")

    # the third: Enter before deciding asks for a decision; X rejects
    wait_for(page, drop)
    page.keyboard.press("Enter")
    expect(page.locator("[data-testid=status]")).to_have_text(
        "Confirm (C), edit (E) or reject (X) the proposal first."
    )
    page.keyboard.press("x")
    page.keyboard.press("Enter")

    # the correction: the rejected answer is shown with the draft; 1 confirms
    wait_for(page, correction)
    expect(page.locator("[data-testid=proposal]")).to_have_text("Boil it for nine minutes.")
    expect(page.locator("[data-testid=response]")).to_have_text("Eggs? No idea.")
    page.keyboard.press("1")
    page.keyboard.press("Enter")

    page.wait_for_selector("[data-testid=no-task]")
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "0")
    status = {p.pk: p.status for p in Proposal.objects.all()}
    assert status == {
        keep.pk: ProposalStatus.CONFIRMED,
        edit.pk: ProposalStatus.EDITED,
        drop.pk: ProposalStatus.REJECTED,
        correction.pk: ProposalStatus.CONFIRMED,
    }
    variants = Prompt.objects.filter(source_prompt=source).order_by("id")
    assert [v.messages[-1]["content"] for v in variants] == [
        "What is the way to boil an egg?",
        "How long should an egg boil?",
    ]
    correction.refresh_from_db()
    assert correction.result_response.text == "Boil it for nine minutes."
    assert correction.decided_by == annotator
    assert any(url.endswith("/frontend/annotate/confirm.js") for url in scripts)
    assert page_errors(page) == []


@pytest.fixture
def scored_pairs():
    project, annotator = project_with_annotator("Feedback")
    services.project_settings_update(project=project, changes={"labels": {"reward_feedback": True}})
    tasks = []
    for n, (reward_a, reward_b) in enumerate([(3.0, -1.0), (0.0, 2.0)]):
        task, _ = services.task_create(
            project=project,
            messages=[{"role": "user", "content": f"Question {n}?"}],
            kind=TaskKind.PAIRWISE,
            responses=[{"text": f"Answer A{n}."}, {"text": f"Answer B{n}."}],
            priority=10 - n,
        )
        TaskSelectionScore.objects.create(
            task=task, strategy="uncertainty", score=-1.0, priority=-1, reward_a=reward_a,
            reward_b=reward_b, reward_model="/models/rm",
        )  # fmt: skip
        tasks.append(task)
    return project, annotator, tasks


def watch_network(page):
    """Every request URL, and the bodies of the task views the page received."""
    seen = {"requests": [], "task_bodies": []}
    page.on("request", lambda request: seen["requests"].append(request.url))

    def on_response(response):
        if "/tasks/next/" in response.url and response.status == 200:
            seen["task_bodies"].append(response.text())

    page.on("response", on_response)
    return seen


def test_the_reward_preference_appears_only_after_the_label_is_saved(page, login, scored_pairs):
    project, annotator, (first, second) = scored_pairs
    seen = watch_network(page)
    open_page(page, login, project)
    feedback = page.locator("[data-testid=reward-feedback-text]")

    # before submitting: the task is on screen and the next one preloaded, and neither the
    # DOM nor any request or response carries the model's preference
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(first.pk)}']")
    page.wait_for_load_state("networkidle")
    assert not [url for url in seen["requests"] if "reward-preference" in url]
    assert len(seen["task_bodies"]) == 2  # the task shown and the one preloaded
    for body in seen["task_bodies"]:
        view = json.loads(body)
        assert not {"reward", "preferred", "score", "priority"} & set(view)
        assert "reward" not in body.lower()
    assert "prefers" not in page.locator("body").inner_text()
    expect(feedback).not_to_have_attribute("data-preferred", "left")
    expect(feedback).not_to_have_attribute("data-preferred", "right")

    # when the annotator prefers the right-hand response and submits
    shown_order = Lease.objects.get(task=first, annotator=annotator).shown_order
    a_is_left = shown_order[0] == first.items.get(position=0).response_id
    page.keyboard.press("2")
    page.keyboard.press("Enter")

    # then, once the label is stored, the preference (A, on whichever side A was) shows
    model_side = "left" if a_is_left else "right"
    expect(feedback).to_have_attribute("data-preferred", model_side)
    expect(feedback).to_have_attribute("data-task-id", str(task_ref(first.pk)))
    agreement = "you agree" if model_side == "right" else "you differ"
    expect(feedback).to_contain_text(
        f"you chose the right response; the reward model prefers the {model_side} response"
    )
    expect(feedback).to_contain_text(agreement)
    asked = [url for url in seen["requests"] if "reward-preference" in url]
    assert asked == [
        f"{page.url.split('/projects/')[0]}/api/tasks/{task_ref(first.pk)}/reward-preference/"
    ]
    # and nothing is asked about the task now on screen
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(second.pk)}']")
    page.wait_for_load_state("networkidle")
    assert not [u for u in seen["requests"] if f"/tasks/{task_ref(second.pk)}/reward-pref" in u]
    assert page_errors(page) == []


def test_with_the_setting_off_nothing_is_shown_or_asked(page, login, scored_pairs):
    project, _annotator, (first, second) = scored_pairs
    services.project_settings_update(project=project, changes={"labels": {"reward_feedback": None}})
    seen = watch_network(page)
    open_page(page, login, project)
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(first.pk)}']")
    expect(page.locator("[data-testid=reward-feedback]")).to_have_count(0)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"[data-testid=task][data-task-id='{task_ref(second.pk)}']")
    expect(page.locator("[data-testid=outbox-status]")).to_have_attribute("data-pending", "0")
    page.wait_for_load_state("networkidle")
    assert not [url for url in seen["requests"] if "reward-preference" in url]
    assert page_errors(page) == []
