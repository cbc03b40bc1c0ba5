"""Rubric and ranking tasks reach the review queue when their labels disagree, and leave it
once adjudicated (the queue empties); the review page's form posts each kind's decision."""

import json

import pytest
from django.test import Client

from annotation.explorer.services import tasks_bulk_apply
from annotation.models import TaskKind
from annotation.opaque import item_ref
from annotation.quality import selectors as qs
from annotation.quality import services as quality
from annotation.quality.models import Adjudication
from annotation.roles import Role
from config.errors import ValidationFailed

pytestmark = pytest.mark.django_db


def scores(task, *rows):
    ids = list(task.items.order_by("position").values_list("response_id", flat=True))
    dims = ("helpfulness", "harmlessness", "honesty")
    return {
        "scores": {str(i): dict(zip(dims, r, strict=True)) for i, r in zip(ids, rows, strict=True)}
    }


@pytest.fixture
def disputed(queued_tasks, no_gold_draws, project, annotators, make_task, label_as):
    """One rubric task two annotators scored apart, one ranking task they ordered apart."""
    project.overlap = 2
    project.save()
    rubric = make_task(TaskKind.RUBRIC, responses=["kind answer", "rude answer"])
    ranking = make_task(TaskKind.RANKING)
    people = annotators(2)
    rubric_votes = [((5, 5, 5), (1, 1, 1)), ((1, 1, 1), (5, 5, 5))]
    for i, user in enumerate(people):
        for _ in range(2):
            label_as(
                project,
                user,
                choose=lambda lease, i=i: (
                    scores(lease.task, *rubric_votes[i])
                    if lease.task.kind == TaskKind.RUBRIC
                    else {"ranking": [[x] for x in sorted(
                        lease.task.items.values_list("response_id", flat=True), reverse=bool(i))]}
                ),
            )  # fmt: skip
    quality.quality_refresh(project_id=project.pk)
    return rubric, ranking


def test_disputed_rubric_and_ranking_tasks_leave_the_queue_once_decided(
    disputed, project, member, client_for
):
    rubric, ranking = disputed
    reviewer = member(Role.REVIEWER, "rev")
    assert {row["task_id"] for row in qs.review_queue(project)} == {rubric.pk, ranking.pk}

    # when the reviewer decides both through the review page's forms
    client = Client()
    client.force_login(reviewer)
    items = list(rubric.items.order_by("position").values_list("pk", "response_id"))
    ids = [response_id for _pk, response_id in items]
    form = {"reason": "the first is kind and correct"}
    # (the form names each response as the review view does: by its task item's ref)
    for (item_id, _), values in zip(items, ((5, 4, 5), (1, 2, 3)), strict=True):
        for name, value in zip(("helpfulness", "harmlessness", "honesty"), values, strict=True):
            form[f"score-{item_ref(item_id)}-{name}"] = str(value)
    assert client.post(f"/tasks/{rubric.pk}/review/", form).status_code == 302
    order = list(ranking.items.order_by("position").values_list("response_id", flat=True))
    tiers = [[order[2]], [order[0], order[1]]]
    body = {"ranking": json.dumps(tiers), "reason": "the third is the only correct one"}
    assert client.post(f"/tasks/{ranking.pk}/review/", body).status_code == 302

    # then both decisions are stored in canonical form and the queue is empty
    assert Adjudication.objects.get(task=rubric).payload["scores"] == {
        str(ids[0]): {"helpfulness": 5, "harmlessness": 4, "honesty": 5},
        str(ids[1]): {"helpfulness": 1, "harmlessness": 2, "honesty": 3},
    }
    assert Adjudication.objects.get(task=ranking).payload["ranking"] == [
        [order[2]], sorted(order[:2]),
    ]  # fmt: skip
    assert qs.review_queue(project) == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"reason": "r"}, "choose a score for helpfulness"),
        ({"reason": "r", "bad": "1"}, "choose a score for helpfulness"),
    ],
)
def test_a_rubric_form_with_a_missing_score_says_which_and_stores_nothing(
    disputed, member, form, message
):
    rubric, _ = disputed
    client = Client()
    client.force_login(member(Role.REVIEWER, "rev"))
    response = client.post(f"/tasks/{rubric.pk}/review/", form, follow=True)
    assert message in response.content.decode()
    assert not Adjudication.objects.filter(task=rubric).exists()


@pytest.mark.parametrize("ranking", ["", "not json", "[[1], [2]]", '{"a": 1}', "[[" * 100])
def test_a_bad_ranking_is_refused_with_the_reason_and_stores_nothing(disputed, member, ranking):
    _, task = disputed
    client = Client()
    client.force_login(member(Role.REVIEWER, "rev"))
    response = client.post(
        f"/tasks/{task.pk}/review/", {"ranking": ranking, "reason": "r"}, follow=True
    )
    assert response.status_code == 200
    assert "ranking" in response.content.decode().split('class="messages"')[1][:400]
    assert not Adjudication.objects.filter(task=task).exists()


# --------------------------------------------------------------------------------------------
# Corrections: the reviewer decides the final text (one annotator's, their own, or "no change")
# --------------------------------------------------------------------------------------------

ORIGINAL = "The capitol of France is Paris."


@pytest.fixture
def rewritten(queued_tasks, no_gold_draws, project, annotators, make_task, label_as, admin_user):
    """A correction task two annotators rewrote differently, sent to adjudication."""
    project.overlap = 2
    project.save()
    task = make_task(TaskKind.CORRECTION, responses=[ORIGINAL])
    rewrites = ["The capital of France is Paris.", "Paris is the capital of France."]
    people = annotators(2)
    for user, text in zip(people, rewrites, strict=True):
        label_as(project, user, {"corrected_text": text})
    tasks_bulk_apply(
        project=project, by=admin_user, action="send_to_adjudication", task_ids=[task.pk]
    )
    return task


def test_a_correction_task_is_decided_through_the_api_and_leaves_the_queue(
    rewritten, project, member, client_for
):
    task = rewritten
    reviewer = member(Role.REVIEWER, "rev")
    assert [row["task_id"] for row in qs.review_queue(project)] == [task.pk]
    client = client_for(reviewer)
    view = client.get(f"/api/tasks/{task.pk}/review/").json()
    shown_id = view["responses"][0]["id"]

    # when the reviewer writes the final text, naming the response as the review view does
    final = "The capital of France is Paris, on the Seine."
    answer = client.post(
        f"/api/tasks/{task.pk}/review/",
        {"payload": {"corrected_text": final, "response_id": shown_id}, "reason": "both half"},
        format="json",
    )

    # then it is stored as a canonical correction and the queue is empty
    assert answer.status_code == 201, answer.content
    response_id = task.items.get().response_id
    stored = Adjudication.objects.get(task=task).payload
    assert {
        k: stored[k] for k in ("response_id", "original_text", "corrected_text", "unchanged")
    } == {
        "response_id": response_id,
        "original_text": ORIGINAL,
        "corrected_text": final,
        "unchanged": False,
    }
    assert stored["edit_distance"] > 0
    assert stored["diff"].startswith("--- original")
    assert answer.json()["adjudication"]["payload"]["response_id"] == shown_id
    assert qs.review_queue(project) == []
    assert None not in set(task.labels.values_list("reviewed_at", flat=True))
    # (gold marking stays refused: a correction has no single right answer to check against)
    with pytest.raises(ValidationFailed):
        quality.gold_mark(task=task, payload={"corrected_text": final}, by=reviewer)


def test_the_original_needing_no_correction_is_a_decision(rewritten, project, member, client_for):
    task = rewritten
    client = client_for(member(Role.REVIEWER, "rev"))
    answer = client.post(
        f"/api/tasks/{task.pk}/review/",
        {"payload": {"corrected_text": ORIGINAL}, "reason": "capitol is a building; fine"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    stored = Adjudication.objects.get(task=task).payload
    assert (stored["unchanged"], stored["corrected_text"], stored["edit_distance"]) == (
        True, ORIGINAL, 0,
    )  # fmt: skip
    assert qs.review_queue(project) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"corrected_text": "   "}, "corrected_text"),
        ({"corrected_text": 7}, "corrected_text"),
        ({}, "corrected_text"),
        ({"corrected_text": "x" * 100_001}, "corrected_text"),
        ({"corrected_text": "Fine.", "response_id": 999_999_999}, "response_id"),
    ],
)
def test_a_bad_correction_decision_is_a_400_naming_the_field_and_stores_nothing(
    rewritten, project, member, client_for, payload, field
):
    task = rewritten
    client = client_for(member(Role.REVIEWER, "rev"))
    answer = client.post(
        f"/api/tasks/{task.pk}/review/", {"payload": payload, "reason": "r"}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == field, answer.json()
    assert not Adjudication.objects.filter(task=task).exists()
    assert not task.labels.filter(reviewed_at__isnull=False).exists()
    assert [row["task_id"] for row in qs.review_queue(project)] == [task.pk]


def test_the_review_form_decides_a_correction_and_takes_the_browsers_line_ends(
    rewritten, project, member
):
    # (a browser sends a textarea's line ends as CRLF; the original's "\n" must still match)
    task = rewritten
    client = Client()
    client.force_login(member(Role.REVIEWER, "rev"))
    page = client.get(f"/tasks/{task.pk}/review/").content.decode()
    assert 'data-kind="correction"' in page
    assert page.count('data-testid="rewrite"') == 2
    ref = item_ref(task.items.get().pk)
    body = {"corrected_text": "Paris is the capital\r\nof France.", "response_id": str(ref),
            "reason": "clearer"}  # fmt: skip
    assert client.post(f"/tasks/{task.pk}/review/", body).status_code == 302
    assert Adjudication.objects.get(task=task).payload["corrected_text"] == (
        "Paris is the capital\nof France."
    )
    assert qs.review_queue(project) == []
