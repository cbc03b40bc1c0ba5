"""Rubric and ranking tasks reach the review queue when their labels disagree, and leave it
once adjudicated (the queue empties); the review page's form posts each kind's decision."""

import json

import pytest
from django.test import Client

from annotation.models import TaskKind
from annotation.opaque import item_ref
from annotation.quality import selectors as qs
from annotation.quality import services as quality
from annotation.quality.models import Adjudication
from annotation.roles import Role

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
