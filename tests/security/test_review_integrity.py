"""Issue 15, finding 1: a reviewer who also annotates cannot read an open task's sides and
labels through the review view (API or page) or another's label, and the review view names
responses by ids that carry no order (a review round writes the candidate's answers first)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation import services
from annotation.models import Label, TaskKind, TaskStatus
from annotation.opaque import task_id_from_ref
from annotation.quality.models import Adjudication
from annotation.roles import Role

User = get_user_model()
CANDIDATE_TEXT = "the candidate's answer"
CHAMPION_TEXT = "the champion's answer"


@pytest.fixture
def team(db):
    admin = User.objects.create_user("ri-admin", password="pw")
    reviewer = User.objects.create_user("ri-reviewer", password="pw")
    first = User.objects.create_user("ri-ann1", password="pw")
    second = User.objects.create_user("ri-ann2", password="pw")
    project = services.project_create(name="Review integrity", created_by=admin, overlap=2)
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    for user in (first, second):
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    # The candidate's answer is written first: its response id is the lower one.
    task, _ = services.task_create(
        project=project,
        messages=[{"role": "user", "content": "which is better?"}],
        kind=TaskKind.PAIRWISE,
        responses=[
            {"text": CANDIDATE_TEXT, "origin": "model", "model_name": "candidate"},
            {"text": CHAMPION_TEXT, "origin": "model", "model_name": "champion"},
        ],
    )
    return {"project": project, "task": task, "reviewer": reviewer, "annotators": (first, second)}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _claim(user, project) -> int:
    response = _client(user).post(
        f"/api/projects/{project.pk}/tasks/next/", "{}", content_type="application/json"
    )
    assert response.status_code == 200, response.content[:300]
    return task_id_from_ref(response.json()["task_id"])


def _label(user, task, choice="A"):
    response = _client(user).post(
        f"/api/tasks/{task.pk}/labels/",
        json.dumps({"payload": {"choice": choice, "strength": "clear"}}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content[:300]
    return Label.objects.get(task=task, annotator=user)


def _assert_sealed(client, task, label: Label | None):
    api = client.get(f"/api/tasks/{task.pk}/review/")
    assert api.status_code == 409, api.content[:300]
    assert api.json()["error"] == "task_sealed"
    page = client.get(f"/tasks/{task.pk}/review/")
    assert page.status_code == 409
    for response in (api, page):
        body = response.content.decode()
        assert CANDIDATE_TEXT not in body
        assert CHAMPION_TEXT not in body
        assert '"labels"' not in body
        assert "review-labels" not in body
    if label is not None:
        assert client.get(f"/api/labels/{label.pk}/").status_code == 404
        assert client.get(f"/api/labels/{label.pk}/revisions/").status_code == 404


def test_a_reviewer_holding_a_lease_sees_neither_sides_nor_labels(team):
    # given a reviewer who claimed the open task another annotator has already labelled
    project, task, reviewer = team["project"], team["task"], team["reviewer"]
    first, _ = team["annotators"]
    assert _claim(first, project) == task.pk
    other = _label(first, task, "A")
    assert _claim(reviewer, project) == task.pk
    # when they open the task's review view (API and page) or the other annotator's label,
    # then nothing of it is shown, and no adjudication can be posted
    client = _client(reviewer)
    _assert_sealed(client, task, other)
    posted = client.post(
        f"/api/tasks/{task.pk}/review/",
        json.dumps({"payload": {"choice": "A"}, "reason": "peeking"}),
        content_type="application/json",
    )
    assert posted.status_code == 409
    assert not Adjudication.objects.exists()


def test_an_open_task_is_sealed_even_to_a_reviewer_who_has_not_drawn_it(team):
    project, task, reviewer = team["project"], team["task"], team["reviewer"]
    first, _ = team["annotators"]
    _claim(first, project)
    other = _label(first, task, "B")
    task.refresh_from_db()
    assert task.status == TaskStatus.OPEN
    _assert_sealed(_client(reviewer), task, other)


def test_a_reviewers_own_editable_label_keeps_the_task_sealed(team):
    # given a done task the reviewer labelled, in a project whose edit window is one hour
    project, task, reviewer = team["project"], team["task"], team["reviewer"]
    first, _ = team["annotators"]
    services.project_settings_update(project=project, changes={"labels": {"edit_window_hours": 1}})
    _claim(first, project)
    _label(first, task, "A")
    _claim(reviewer, project)
    own = _label(reviewer, task, "B")
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE
    # when the window is still open, then the review view is sealed
    client = _client(reviewer)
    _assert_sealed(client, task, None)
    # and once the window has closed, the task opens for review
    Label.objects.filter(pk=own.pk).update(created_at=own.created_at - timedelta(hours=2))
    assert client.get(f"/api/tasks/{task.pk}/review/").status_code == 200


def test_a_done_task_shows_labels_with_ids_that_carry_no_order(team):
    # given a done task labelled by two annotators, one picking each answer
    project, task, reviewer = team["project"], team["task"], team["reviewer"]
    first, second = team["annotators"]
    for user, choice in ((first, "A"), (second, "B")):
        _claim(user, project)
        _label(user, task, choice)
    response_ids = set(task.items.values_list("response_id", flat=True))
    # when the reviewer opens its review view
    view = _client(reviewer).get(f"/api/tasks/{task.pk}/review/")
    # then the labels are there, and no response id (nor the order they were written in)
    assert view.status_code == 200, view.content[:300]
    data = view.json()
    assert sorted(lb["payload"]["outcome"] for lb in data["labels"]) == ["A", "B"]
    shown = [r["id"] for r in data["responses"]]
    assert not set(shown) & response_ids
    assert all(i >= 2**52 for i in shown)
    winners = {lb["payload"]["winner"] for lb in data["labels"]}
    assert winners == set(shown)
    page = _client(reviewer).get(f"/tasks/{task.pk}/review/").content.decode()
    assert all(f"#{i}<" not in page for i in response_ids)
    # and a decision naming a response by its shown id is recorded against that response
    winner = data["responses"][1]
    decided = _client(reviewer).post(
        f"/api/tasks/{task.pk}/review/",
        json.dumps({"payload": {"choice": winner["position"]}, "reason": "B is right"}),
        content_type="application/json",
    )
    assert decided.status_code == 201, decided.content[:300]
    assert decided.json()["adjudication"]["payload"]["winner"] == winner["id"]


def test_a_ranking_decision_names_responses_by_the_ids_the_review_view_shows(team):
    project, reviewer = team["project"], team["reviewer"]
    first, second = team["annotators"]
    task, _ = services.task_create(
        project=project,
        messages=[{"role": "user", "content": "rank these"}],
        kind=TaskKind.RANKING,
        responses=[{"text": t, "origin": "model", "model_name": "m"} for t in ("x", "y", "z")],
    )
    Label.objects.all().delete()  # the pairwise task of the fixture is not part of this test
    for user in (first, second):
        client = _client(user)
        served = client.post(
            f"/api/projects/{project.pk}/tasks/next/",
            json.dumps({"exclude": [team["task"].pk]}),
            content_type="application/json",
        ).json()
        refs = [r["id"] for r in served["responses"]]
        answer = client.post(
            f"/api/tasks/{task.pk}/labels/",
            json.dumps({"payload": {"ranking": [[i] for i in refs]}}),
            content_type="application/json",
        )
        assert answer.status_code == 201, answer.content[:300]
    view = _client(reviewer).get(f"/api/tasks/{task.pk}/review/").json()
    shown = [r["id"] for r in view["responses"]]
    # (the page's ranking control posts tiers as JSON)
    form = {"ranking": json.dumps([[i] for i in reversed(shown)]), "reason": "reversed"}
    posted = _client(reviewer).post(f"/tasks/{task.pk}/review/", form)
    assert posted.status_code == 302
    items = dict(task.items.values_list("position", "response_id"))
    stored = Adjudication.objects.get(task=task).payload["ranking"]
    assert [tier[0] for tier in stored] == [items[2], items[1], items[0]]


def _final_label_tasks(client, project) -> list[int]:
    response = client.get(f"/api/projects/{project.pk}/final-labels/")
    assert response.status_code == 200, response.content[:300]
    return [row["task_id"] for row in response.json()["tasks"]]


def test_final_labels_leave_out_an_open_task_and_one_sealed_by_the_readers_own_label(team):
    # given an open task one annotator has labelled (overlap 2: it waits for a second label)
    project, task, reviewer = team["project"], team["task"], team["reviewer"]
    first, _ = team["annotators"]
    services.project_settings_update(project=project, changes={"labels": {"edit_window_hours": 1}})
    _claim(first, project)
    _label(first, task, "A")
    client = _client(reviewer)
    # when the reviewer reads the final labels, then the open task's partial label is not there
    assert _final_label_tasks(client, project) == []
    # given the reviewer then labels it too (the task is done, their label still editable)
    _claim(reviewer, project)
    own = _label(reviewer, task, "B")
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE
    # then it stays out for them while their label can change...
    assert _final_label_tasks(client, project) == []
    # ...while an admin who did not label it reads it
    assert _final_label_tasks(_client(project.created_by), project) == [task.pk]
    # and once the edit window has closed, the reviewer reads it with both labels
    Label.objects.filter(pk=own.pk).update(created_at=own.created_at - timedelta(hours=2))
    rows = client.get(f"/api/projects/{project.pk}/final-labels/").json()["tasks"]
    assert [row["task_id"] for row in rows] == [task.pk]
    assert len(rows[0]["labels"]) == 2
