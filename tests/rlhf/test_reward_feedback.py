"""The reward model's preference as feedback: only after the annotator's own label is saved,
only where the project turned it on; and the quality page's agreement per week."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation import services as annotation_services
from annotation.models import Label, TaskKind
from annotation.roles import Role
from rlhf.feedback.selectors import reward_agreement_by_week
from rlhf.models import TaskSelectionScore

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    users = get_user_model().objects
    return {
        "admin": users.create_user("ada-admin", password="pw"),
        "annotator": users.create_user("ann", password="pw"),
        "other": users.create_user("otto", password="pw"),
    }


@pytest.fixture
def project(people):
    project = annotation_services.project_create(
        name="Feedback", created_by=people["admin"], overlap=2
    )
    annotation_services.membership_set(project=project, user=people["admin"], role=Role.ADMIN)
    for name in ("annotator", "other"):
        annotation_services.membership_set(project=project, user=people[name], role=Role.ANNOTATOR)
    return project


def feedback_on(project, on=True):
    annotation_services.project_settings_update(
        project=project, changes={"labels": {"reward_feedback": on}}
    )
    project.refresh_from_db()


def scored_pair(project, n, reward_a, reward_b):
    task, _ = annotation_services.task_create(
        project=project,
        messages=[{"role": "user", "content": f"question {n}?"}],
        kind=TaskKind.PAIRWISE,
        responses=[{"text": f"answer A{n}"}, {"text": f"answer B{n}"}],
    )
    TaskSelectionScore.objects.create(
        task=task, strategy="uncertainty", score=0.0, priority=-1, reward_a=reward_a,
        reward_b=reward_b, reward_model="/models/rm",
    )  # fmt: skip
    return task


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_setting_is_off_by_default_and_can_be_turned_on(project):
    assert annotation_services.project_settings(project)["labels"]["reward_feedback"] is False
    feedback_on(project)
    assert annotation_services.project_settings(project)["labels"]["reward_feedback"] is True


def test_a_non_boolean_setting_is_a_400_naming_it(project, people):
    response = client_for(people["admin"]).patch(
        f"/api/projects/{project.pk}/settings/",
        {"labels": {"reward_feedback": "yes"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["field"] == "labels.reward_feedback"
    project.refresh_from_db()
    assert "labels" not in project.options


def test_the_preference_is_refused_before_the_label_and_given_after_it(project, people):
    feedback_on(project)
    task = scored_pair(project, 1, reward_a=2.0, reward_b=-1.0)  # the model prefers A
    client = client_for(people["annotator"])
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    url = f"/api/tasks/{shown['task_id']}/reward-preference/"
    # the task as shown names no reward, preference or score
    assert not {"reward", "preferred", "score", "priority"} & set(shown)
    assert "reward" not in str(shown).lower()

    # while the task is held and unlabelled: 409, and nothing of the preference
    before = client.get(url)
    assert before.status_code == 409
    assert before.json()["error"] == "label_first"
    assert "left" not in before.content.decode()
    assert "right" not in before.content.decode()

    # the annotator picks the side the model does not prefer
    a_is_left = task.items.get(position=0).response_id == task.leases.get().shown_order[0]
    submitted = client.post(
        f"/api/tasks/{shown['task_id']}/labels/", {"payload": {"choice": "B"}}, format="json"
    )
    assert submitted.status_code == 201

    after = client.get(url)
    assert after.status_code == 200
    model_side = "left" if a_is_left else "right"
    person_side = "right" if a_is_left else "left"
    assert after.json() == {"preferred": model_side, "your_choice": person_side, "agrees": False}


def test_off_by_default_the_preference_is_refused_even_after_the_label(project, people):
    scored_pair(project, 1, reward_a=2.0, reward_b=-1.0)
    client = client_for(people["annotator"])
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    client.post(
        f"/api/tasks/{shown['task_id']}/labels/", {"payload": {"choice": "A"}}, format="json"
    )
    response = client.get(f"/api/tasks/{shown['task_id']}/reward-preference/")
    assert response.status_code == 409
    assert response.json()["error"] == "reward_feedback_off"
    assert "left" not in response.content.decode()
    assert "right" not in response.content.decode()


def test_another_annotator_cannot_read_a_task_they_never_held(project, people):
    feedback_on(project)
    scored_pair(project, 1, reward_a=2.0, reward_b=-1.0)
    client = client_for(people["annotator"])
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    client.post(
        f"/api/tasks/{shown['task_id']}/labels/", {"payload": {"choice": "A"}}, format="json"
    )
    response = client_for(people["other"]).get(f"/api/tasks/{shown['task_id']}/reward-preference/")
    assert response.status_code == 404


def test_an_unscored_pair_says_so(project, people):
    feedback_on(project)
    annotation_services.task_create(
        project=project,
        messages=[{"role": "user", "content": "unscored?"}],
        kind=TaskKind.PAIRWISE,
        responses=[{"text": "one"}, {"text": "two"}],
    )
    client = client_for(people["annotator"])
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    client.post(
        f"/api/tasks/{shown['task_id']}/labels/", {"payload": {"choice": "tie"}}, format="json"
    )
    body = client.get(f"/api/tasks/{shown['task_id']}/reward-preference/").json()
    assert body == {"preferred": None, "your_choice": "tie", "agrees": None}


def label_as(project, user, task, choice, *, weeks_ago):
    lease = annotation_services.task_claim_next(project=project, annotator=user)
    assert lease.task.pk == task.pk
    result = annotation_services.label_submit(
        task=lease.task, annotator=user, payload={"choice": choice}
    )
    when = timezone.now() - timedelta(weeks=weeks_ago)
    Label.objects.filter(pk=result.label.pk).update(created_at=when)


def test_agreement_with_the_reward_model_is_reported_per_week(project, people):
    # given three scored pairs: two labelled three weeks ago, one this week
    prefers_a = scored_pair(project, 1, reward_a=1.0, reward_b=0.0)
    prefers_b = scored_pair(project, 2, reward_a=0.0, reward_b=1.0)
    level = scored_pair(project, 3, reward_a=0.5, reward_b=0.5)
    ann, other = people["annotator"], people["other"]
    label_as(project, ann, prefers_a, "A", weeks_ago=3)  # agrees
    label_as(project, other, prefers_a, "B", weeks_ago=3)  # differs
    label_as(project, ann, prefers_b, "B", weeks_ago=0)  # agrees
    label_as(project, other, prefers_b, "tie", weeks_ago=0)  # no side: not counted
    label_as(project, ann, level, "A", weeks_ago=0)  # level rewards: not counted

    rows = reward_agreement_by_week(project=project)

    assert [(r["labels"], r["agree"]) for r in rows] == [(2, 1), (1, 1)]
    assert rows[0]["rate"] == 0.5
    assert rows[0]["starts"] < rows[1]["starts"]
    assert rows[0]["week"].count("-W") == 1
    assert 0 < rows[0]["ci_low"] < 0.5 < rows[0]["ci_high"] < 1


def test_the_quality_page_shows_the_weekly_agreement(project, people, client):
    feedback_on(project)
    task = scored_pair(project, 1, reward_a=1.0, reward_b=0.0)
    label_as(project, people["annotator"], task, "A", weeks_ago=0)
    client.force_login(people["admin"])
    page = client.get(reverse("frontend:quality-dashboard", args=[project.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="reward-agreement"' in html
    assert "100%" in html
