"""Quality through the API, the pages and the CLI: access rules and shapes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from annotation.quality import services as quality
from annotation.quality.models import Adjudication, GoldTask
from annotation.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(queued_tasks, no_gold_draws, project, annotators, make_task, label_as):
    """Two tasks with overlap 2: one agreed (A, A), one split (A, B)."""
    agreed, split = make_task(), make_task()
    first, second = annotators(2)
    for user, choices in ((first, ["A", "A"]), (second, ["A", "B"])):
        for choice in choices:
            label_as(project, user, {"choice": choice, "strength": "clear"})
    quality.quality_refresh(project_id=project.pk)
    return {"agreed": agreed, "split": split, "annotators": (first, second)}


def _client(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_report_is_for_members_who_read_data(labelled, project, member, make_user):
    reviewer = member(Role.REVIEWER, "rev")
    annotator = labelled["annotators"][0]
    outsider = make_user("outsider")
    url = f"/api/projects/{project.pk}/quality/"

    response = _client(reviewer).get(url)

    assert response.status_code == 200
    report = json.loads(response.content)
    assert report["progress"]["labels"] == 4
    assert report["kinds"]["pairwise"]["agreement"]["outcome"]["units"] == 2
    assert _client(annotator).get(url).status_code == 403
    assert _client(outsider).get(url).status_code == 404


def test_reviewer_adjudicates_through_the_api(labelled, project, member):
    reviewer = member(Role.REVIEWER, "rev")
    client = _client(reviewer)
    split = labelled["split"]

    queue = client.get(f"/api/projects/{project.pk}/review/queue/").json()
    assert [row["task_id"] for row in queue] == [split.pk]
    detail = client.get(f"/api/tasks/{split.pk}/review/").json()
    assert sorted(lb["annotator"] for lb in detail["labels"]) == ["ann0", "ann1"]
    refused = client.post(f"/api/tasks/{split.pk}/review/", {"payload": {"choice": "B"}},
                          format="json")  # fmt: skip
    assert refused.status_code == 400
    assert not Adjudication.objects.exists()

    decided = client.post(
        f"/api/tasks/{split.pk}/review/",
        {"payload": {"choice": "B"}, "reason": "B is correct"},
        format="json",
    )

    assert decided.status_code == 201
    assert decided.json()["adjudication"]["reason"] == "B is correct"
    final = client.get(f"/api/projects/{project.pk}/final-labels/?policy=unanimous").json()
    by_task = {row["task_id"]: row for row in final["tasks"]}
    assert by_task[split.pk]["provenance"] == "adjudicated"
    assert by_task[labelled["agreed"].pk]["provenance"] == "unanimous"
    bad = client.get(f"/api/projects/{project.pk}/final-labels/?policy=loudest")
    assert bad.status_code == 400


def test_annotators_cannot_review_or_mark_gold(labelled, project):
    annotator = labelled["annotators"][0]
    client = _client(annotator)
    split = labelled["split"]
    assert client.get(f"/api/tasks/{split.pk}/review/").status_code == 403
    assert client.post(f"/api/tasks/{split.pk}/gold/", {"payload": {"choice": "A"}},
                       format="json").status_code == 403  # fmt: skip
    assert not GoldTask.objects.exists()


def test_admin_marks_and_unmarks_gold(labelled, project, admin_user, make_task):
    client = _client(admin_user)
    task = make_task()

    marked = client.post(f"/api/tasks/{task.pk}/gold/", {"payload": {"choice": "tie"}},
                         format="json")  # fmt: skip

    assert marked.status_code == 201
    assert marked.json()["expected"]["outcome"] == "tie"
    assert [g["task_id"] for g in client.get(f"/api/projects/{project.pk}/gold/").json()] == [
        task.pk
    ]
    assert client.delete(f"/api/tasks/{task.pk}/gold/").status_code == 204
    assert not GoldTask.objects.exists()
    task.refresh_from_db()
    assert task.required_labels == project.overlap


def test_dashboard_and_review_pages_render(labelled, project, admin_user, client):
    client.force_login(admin_user)
    page = client.get(f"/projects/{project.pk}/quality/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="chart-position"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html
    assert "<script>" not in html  # CSP: no inline scripts
    queue = client.get(f"/projects/{project.pk}/review/")
    assert str(labelled["split"].pk) in queue.content.decode()
    posted = client.post(
        f"/tasks/{labelled['split'].pk}/review/", {"choice": "A", "reason": "A answers it"}
    )
    assert posted.status_code == 302
    assert Adjudication.objects.get().payload["outcome"] == "A"


def test_cli_prints_the_report(labelled, project):
    out = StringIO()
    call_command("quality", "report", "--project", project.slug, stdout=out)
    text = out.getvalue()
    assert f"Quality of {project.name}" in text
    assert "outcome: alpha (nominal)" in text
    assert "ann0" in text
    assert "ann1" in text

    out = StringIO()
    call_command("quality", "report", "--project", str(project.pk), "--json", stdout=out)
    assert json.loads(out.getvalue())["progress"]["labels"] == 4
