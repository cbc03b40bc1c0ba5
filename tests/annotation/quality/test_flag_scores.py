"""Reviewers' flags are the truth annotators' flags are scored against (precision, recall, F1),
and an adjudicator can set them: through the service, the API and the review page."""

import pytest

from annotation import services
from annotation.models import Label
from annotation.quality import selectors as qs
from annotation.quality import services as quality
from annotation.quality.models import Adjudication
from annotation.roles import Role
from config.errors import ValidationFailed

pytestmark = pytest.mark.django_db


@pytest.fixture
def flagged_tasks(project, annotators, make_task, no_gold_draws):
    """Three tasks, two annotators: ann0 flags unsafe on tasks 1 and 2, ann1 flags spam on
    task 1 and unsafe on task 3."""
    project.overlap = 2
    project.save()
    tasks = [make_task() for _ in range(3)]
    ann0, ann1 = annotators(2)
    given = {
        ann0.pk: {tasks[0].pk: ["unsafe"], tasks[1].pk: ["unsafe"], tasks[2].pk: []},
        ann1.pk: {tasks[0].pk: ["spam"], tasks[1].pk: [], tasks[2].pk: ["unsafe"]},
    }
    for user in (ann0, ann1):
        for _ in tasks:
            task = services.task_claim_next(project=project, annotator=user).task
            services.label_submit(
                task=task, annotator=user, payload={"choice": "A"},
                flags=given[user.pk][task.pk], duration_ms=5000,
            )  # fmt: skip
    return tasks, (ann0, ann1)


def test_flag_precision_recall_and_f1_per_annotator_against_the_reviewers_flags(
    project, member, flagged_tasks
):
    tasks, (ann0, ann1) = flagged_tasks
    reviewer = member(Role.REVIEWER, "rev")
    # given the reviewer found "unsafe" on task 1, nothing on task 2, and did not judge
    # flags on task 3 (an adjudication without flags: not truth)
    quality.adjudication_decide(task=tasks[0], reviewer=reviewer, payload={"choice": "A"},
                                reason="r", flags=["unsafe"])  # fmt: skip
    quality.adjudication_decide(task=tasks[1], reviewer=reviewer, payload={"choice": "A"},
                                reason="r", flags=[])  # fmt: skip
    quality.adjudication_decide(task=tasks[2], reviewer=reviewer, payload={"choice": "A"},
                                reason="r")  # fmt: skip

    scores = {row["annotator_id"]: row for row in qs.annotator_flag_scores(project)}

    # then ann0: unsafe right on task 1, unsafe wrong on task 2 -> P 1/2, R 1/1, F1 2/3
    assert scores[ann0.pk] == {
        "annotator_id": ann0.pk, "annotator": "ann0", "tasks": 2, "tp": 1, "fp": 1, "fn": 0,
        "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
    }  # fmt: skip
    # and ann1: spam wrong and unsafe missed on task 1 -> P 0, R 0, F1 undefined
    assert scores[ann1.pk] == {
        "annotator_id": ann1.pk, "annotator": "ann1", "tasks": 2, "tp": 0, "fp": 1, "fn": 1,
        "precision": 0.0, "recall": 0.0, "f1": None,
    }  # fmt: skip


def test_an_adjudicator_may_only_set_the_projects_allowed_flags(project, member, flagged_tasks):
    tasks, _ = flagged_tasks
    reviewer = member(Role.REVIEWER, "rev")
    services.project_settings_update(project=project, changes={"flags": {"allowed": ["unsafe"]}})
    with pytest.raises(ValidationFailed) as refused:
        quality.adjudication_decide(task=tasks[0], reviewer=reviewer, payload={"choice": "A"},
                                    reason="r", flags=["spam"])  # fmt: skip
    assert refused.value.extra == {"field": "flags"}
    assert not Adjudication.objects.exists()
    assert Label.objects.filter(reviewed_at__isnull=False).count() == 0


def test_the_api_and_the_review_page_record_the_adjudicators_flags(
    project, member, flagged_tasks, client
):
    tasks, _ = flagged_tasks
    reviewer = member(Role.REVIEWER, "rev")
    client.force_login(reviewer)
    # the API takes flags beside the decision, and refuses an unknown one naming the field
    bad = client.post(
        f"/api/tasks/{tasks[0].pk}/review/",
        {"payload": {"choice": "A"}, "reason": "r", "flags": ["nonsense"]},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert "flags" in bad.content.decode()
    assert not Adjudication.objects.exists()
    ok = client.post(
        f"/api/tasks/{tasks[0].pk}/review/",
        {"payload": {"choice": "A"}, "reason": "r", "flags": ["unsafe"]},
        content_type="application/json",
    )
    assert ok.status_code == 201
    assert ok.json()["adjudication"]["flags"] == ["unsafe"]
    # the review page offers the flags and records the boxes ticked (none ticked: no flag)
    page = client.get(f"/tasks/{tasks[1].pk}/review/")
    assert 'data-testid="adjudicate-flags"' in page.content.decode()
    client.post(f"/tasks/{tasks[1].pk}/review/", {"choice": "A", "reason": "fine"})
    client.post(
        f"/tasks/{tasks[2].pk}/review/",
        {"choice": "A", "reason": "bad", "flags": ["unsafe", "spam"]},
    )
    flags = dict(Adjudication.objects.values_list("task_id", "flags"))
    assert flags == {tasks[0].pk: ["unsafe"], tasks[1].pk: [], tasks[2].pk: ["spam", "unsafe"]}
    # and the quality page shows each annotator's scores
    dashboard = client.get(f"/projects/{project.pk}/quality/").content.decode()
    assert 'data-testid="flag-score-table"' in dashboard
