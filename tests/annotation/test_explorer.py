"""The data explorer: filters, keyset pages, a task's story, bulk actions, export; and
project creation by the people the setting allows."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.audit import DataAuditEvent
from annotation.explorer.selectors import ExplorerFilters, explorer_page, explorer_queryset
from annotation.models import Project, Task, TaskKind, TaskStatus
from annotation.quality import selectors as quality_selectors
from annotation.quality.models import AdjudicationRequest, GoldTask
from annotation.quality.services import adjudication_decide, quality_recompute
from annotation.roles import Role

pytestmark = pytest.mark.django_db

PAIR = {"choice": "A", "strength": "clear"}


def _pairwise(project, n, prompt=None):
    task, _ = services.task_create(
        project=project, kind=TaskKind.PAIRWISE,
        messages=[{"role": "user", "content": prompt or f"Question {n}?"}],
        responses=[{"text": f"Answer {n}{s}", "origin": "model", "model_name": "m"} for s in "ab"],
    )  # fmt: skip
    return task


def _label(project, user, payload, flags=None):
    lease = services.task_claim_next(project=project, annotator=user)
    return services.label_submit(
        task=lease.task, annotator=user, payload=payload, flags=flags
    ).label


@pytest.fixture
def data(project, member):
    """Project (overlap 2) with 6 pairwise tasks; tasks 0 and 1 labelled by two annotators
    (0 agreeing, 1 disagreeing), one label flagged."""
    tasks = [_pairwise(project, n, prompt="Tell me about otters" if n == 4 else None)
             for n in range(6)]  # fmt: skip
    ann, bob = member(Role.ANNOTATOR, "ann"), member(Role.ANNOTATOR, "bob")
    for task in tasks:
        Task.objects.filter(pk=task.pk).update(
            priority=100 if task.pk in (tasks[0].pk, tasks[1].pk) else 0
        )
    first = _label(project, ann, PAIR)
    second = _label(project, ann, PAIR, flags=["spam"])
    assert {first.task_id, second.task_id} == {tasks[0].pk, tasks[1].pk}
    lease = services.task_claim_next(project=project, annotator=bob)
    services.label_submit(
        task=lease.task,
        annotator=bob,
        payload=PAIR if lease.task_id == tasks[0].pk else {"choice": "B"},
    )
    lease = services.task_claim_next(project=project, annotator=bob)
    services.label_submit(
        task=lease.task,
        annotator=bob,
        payload=PAIR if lease.task_id == tasks[0].pk else {"choice": "B"},
    )
    quality_recompute(project_id=project.pk)
    return tasks, ann, bob


def ids(page):
    return [r["id"] for r in page["rows"]]


def test_filters_narrow_the_table(project, data):
    tasks, _ann, _ = data
    every = sorted((t.pk for t in tasks), reverse=True)
    assert ids(explorer_page(project, ExplorerFilters())) == every
    assert ids(explorer_page(project, ExplorerFilters(status="done"))) == [tasks[1].pk, tasks[0].pk]
    assert ids(explorer_page(project, ExplorerFilters(agreement_max=0.5))) == [tasks[1].pk]
    assert ids(explorer_page(project, ExplorerFilters(agreement_min=1.0))) == [tasks[0].pk]
    assert ids(explorer_page(project, ExplorerFilters(flag="spam"))) == [tasks[1].pk]
    assert ids(explorer_page(project, ExplorerFilters(flag="any"))) == [tasks[1].pk]
    assert ids(explorer_page(project, ExplorerFilters(flag="unsafe"))) == []
    assert ids(explorer_page(project, ExplorerFilters(annotator="ann"))) == [
        tasks[1].pk,
        tasks[0].pk,
    ]
    assert ids(explorer_page(project, ExplorerFilters(annotator="nobody"))) == []
    assert ids(explorer_page(project, ExplorerFilters(q="OTTERS"))) == [tasks[4].pk]
    assert ids(explorer_page(project, ExplorerFilters(kind="ranking"))) == []
    today = timezone.now().date()
    assert ids(explorer_page(project, ExplorerFilters(created_from=today))) == every
    assert ids(explorer_page(project, ExplorerFilters(created_to=today - timedelta(days=1)))) == []
    row = next(
        r for r in explorer_page(project, ExplorerFilters())["rows"] if r["id"] == tasks[1].pk
    )
    assert row["annotators"] == ["ann", "bob"]
    assert row["flags"] == ["spam"]
    assert row["agreement"] == 0.0
    assert row["labels"] == 2
    assert row["status"] == "done"


def test_keyset_pages_walk_every_task_once_both_ways(project, data):
    tasks, _, _ = data
    every = sorted((t.pk for t in tasks), reverse=True)
    first = explorer_page(project, ExplorerFilters(), limit=4)
    assert ids(first) == every[:4]
    assert first["prev_before"] is None
    second = explorer_page(project, ExplorerFilters(), after=first["next_after"], limit=4)
    assert ids(second) == every[4:]
    assert second["next_after"] is None
    back = explorer_page(project, ExplorerFilters(), before=second["prev_before"], limit=4)
    assert ids(back) == every[:4]
    assert back["prev_before"] is None


def test_api_answers_pages_counts_and_names_a_bad_filter(client_for, admin_user, project, data):
    client = client_for(admin_user)
    url = f"/api/projects/{project.pk}/explorer/"
    page = client.get(url + "tasks/", {"status": "done", "limit": 1}).json()
    assert len(page["rows"]) == 1
    assert page["next_after"] is not None
    assert client.get(url + "count/", {"status": "open"}).json() == {"count": 4, "capped": False}
    bad = (
        ({"status": "closed"}, "status"),
        ({"agreement_min": "2"}, "agreement_min"),
        ({"created_from": "31/01/2026"}, "created_from"),
        ({"limit": "0"}, "limit"),
        ({"after": "9" * 30}, "after"),
    )
    for params, field in bad:
        answer = client.get(url + "tasks/", params)
        assert answer.status_code == 400, params
        assert answer.json()["field"] == field


def test_a_non_member_and_an_annotator_cannot_read_it(client_for, project, data, make_user):
    tasks, ann, _ = data
    url = f"/api/projects/{project.pk}/explorer/tasks/"
    assert client_for(make_user("stranger")).get(url).status_code == 404
    assert client_for(ann).get(url).status_code == 403
    assert client_for(ann).get(f"{url}{tasks[0].pk}/").status_code == 403


def test_a_task_opens_with_labels_revisions_and_history(client_for, admin_user, project, data):
    tasks, ann, _ = data
    label = ann.labels.get(task=tasks[0])
    services.label_edit(label=label, editor=ann, payload={"choice": "B"})
    view = (
        client_for(admin_user)
        .get(f"/api/projects/{project.pk}/explorer/tasks/{tasks[0].pk}/")
        .json()
    )
    mine = next(lb for lb in view["labels"] if lb["annotator"] == "ann")
    assert mine["version"] == 2
    assert mine["revisions"][0]["payload"]["outcome"] == "A"
    assert [(s["annotator"], s["state"]) for s in view["leases"]] == [
        ("ann", "submitted"),
        ("bob", "submitted"),
    ]
    other = services.project_create(name="Other", created_by=admin_user)
    foreign = _pairwise(other, 99)
    answer = client_for(admin_user).get(f"/api/projects/{project.pk}/explorer/tasks/{foreign.pk}/")
    assert answer.status_code == 404


def test_bulk_reopen_priority_gold_and_adjudication(
    client_for, admin_user, project, data, make_user
):
    tasks, _ann, _ = data
    client = client_for(admin_user)
    url = f"/api/projects/{project.pk}/explorer/bulk/"
    other = services.project_create(name="Other", created_by=make_user("other-owner"))
    foreign = _pairwise(other, 1)

    answer = client.post(
        url, {"action": "reopen", "task_ids": [tasks[0].pk, tasks[2].pk, foreign.pk]}, format="json"
    ).json()
    assert answer["changed"] == 1
    assert {s["task_id"]: s["reason"] for s in answer["skipped"]} == {
        tasks[2].pk: "already open",
        foreign.pk: "no such task in this project",
    }
    reopened = Task.objects.get(pk=tasks[0].pk)
    assert (reopened.status, reopened.required_labels, reopened.label_count) == (
        TaskStatus.OPEN,
        3,
        2,
    )
    assert Task.objects.get(pk=foreign.pk).status == TaskStatus.OPEN  # untouched

    answer = client.post(
        url, {"action": "set_priority", "task_ids": [tasks[3].pk], "priority": 7}, format="json"
    )
    assert answer.json()["changed"] == 1
    assert Task.objects.get(pk=tasks[3].pk).priority == 7
    bad = client.post(url, {"action": "set_priority", "task_ids": [tasks[3].pk]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["field"] == "priority"

    answer = client.post(
        url,
        {"action": "mark_gold", "task_ids": [tasks[0].pk, tasks[1].pk, tasks[2].pk]},
        format="json",
    ).json()
    assert answer["changed"] == 1
    assert GoldTask.objects.get(task=tasks[0]).expected["outcome"] == "A"
    assert {s["task_id"] for s in answer["skipped"]} == {tasks[1].pk, tasks[2].pk}

    answer = client.post(
        url,
        {"action": "send_to_adjudication", "task_ids": [tasks[1].pk, tasks[2].pk]},
        format="json",
    ).json()
    assert answer["changed"] == 1
    assert answer["skipped"] == [{"task_id": tasks[2].pk, "reason": "no labels to adjudicate yet"}]
    queue = quality_selectors.review_queue(project)
    assert [(r["task_id"], r["requested"]) for r in queue] == [(tasks[1].pk, True)]
    adjudication_decide(
        task=Task.objects.get(pk=tasks[1].pk), reviewer=admin_user, payload={"choice": "B"},
        reason="clear",
    )  # fmt: skip
    assert quality_selectors.review_queue(project) == []
    decided = explorer_queryset(project, ExplorerFilters(review="decided"))
    assert list(decided.values_list("id", flat=True)) == [tasks[1].pk]


def test_bulk_actions_need_the_capability_and_change_nothing_when_refused(
    client_for, project, data, member
):
    tasks, _ann, _ = data
    engineer = member(Role.ENGINEER, "eng")
    url = f"/api/projects/{project.pk}/explorer/bulk/"
    answer = client_for(engineer).post(
        url, {"action": "set_priority", "task_ids": [tasks[3].pk], "priority": 9}, format="json"
    )
    assert answer.status_code == 403
    answer = client_for(engineer).post(
        url, {"action": "send_to_adjudication", "task_ids": [tasks[3].pk]}, format="json"
    )
    assert answer.status_code == 403
    assert Task.objects.get(pk=tasks[3].pk).priority == 0
    assert not AdjudicationRequest.objects.exists()


def test_export_holds_the_filtered_set_as_jsonl_and_csv(client_for, admin_user, project, data):
    tasks, _, _ = data
    url = f"/api/projects/{project.pk}/explorer/export/"
    answer = client_for(admin_user).get(url, {"as": "jsonl", "status": "done"})
    assert answer.status_code == 200
    records = [
        json.loads(line) for line in b"".join(answer.streaming_content).decode().splitlines()
    ]
    assert [r["task_id"] for r in records] == [tasks[0].pk, tasks[1].pk]
    assert len(records[0]["label_payloads"]) == 2
    assert len(records[0]["responses"]) == 2
    answer = client_for(admin_user).get(url, {"as": "csv", "q": "otters"})
    rows = list(csv.DictReader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert [int(r["task_id"]) for r in rows] == [tasks[4].pk]
    assert "otters" in json.loads(rows[0]["prompt"])[0]["content"]
    assert client_for(admin_user).get(url, {"as": "xlsx"}).status_code == 400


# ---------------------------------------------------------------- creating projects


def test_staff_create_a_project_with_gold_settings_and_become_its_admin(client_for, admin_user):
    answer = client_for(admin_user).post("/api/projects/", {
        "name": "Safety", "task_kinds": ["pairwise"], "overlap": 3,
        "settings": {"quality": {"gold_rate": 0.2}},
    }, format="json")  # fmt: skip
    assert answer.status_code == 201
    assert answer.json()["role"] == "admin"
    project = Project.objects.get(pk=answer.json()["id"])
    assert project.options["quality"]["gold_rate"] == 0.2
    assert project.memberships.get().user == admin_user


def test_a_bad_setting_refuses_the_whole_creation(client_for, admin_user):
    answer = client_for(admin_user).post(
        "/api/projects/", {"name": "Bad", "settings": {"quality": {"gold_rate": 3}}}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "quality.gold_rate"
    assert not Project.objects.filter(name="Bad").exists()


def test_who_creates_projects_follows_the_setting(client_for, make_user, settings):
    user = make_user("plain")
    assert (
        client_for(user).post("/api/projects/", {"name": "Mine"}, format="json").status_code == 403
    )
    assert client_for(user).get("/api/me/").json()["can_create_projects"] is False
    settings.TANDEM_PROJECT_CREATORS = "everyone"
    assert (
        client_for(user).post("/api/projects/", {"name": "Mine"}, format="json").status_code == 201
    )


def test_bulk_on_the_filtered_set_applies_to_every_match_and_is_audited(
    client_for, admin_user, project, data
):
    # given six tasks, four of them open and unlabelled
    tasks, _ann, _ = data
    url = f"/api/projects/{project.pk}/explorer/bulk/"
    open_ids = sorted(t.pk for t in tasks[2:])
    body = {
        "action": "set_priority",
        "priority": 5,
        "filters": {"status": "open", "kind": "pairwise", "q": ""},
        "expected_count": 4,
    }
    # when the admin applies a priority to all four matching
    answer = client_for(admin_user).post(url, body, format="json")
    # then each of them (and only they) changed, and one audit event says so
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"action": "set_priority", "changed": 4, "skipped": []}
    assert sorted(Task.objects.filter(priority=5).values_list("id", flat=True)) == open_ids
    assert sorted(Task.objects.filter(priority=100).values_list("id", flat=True)) == sorted(
        [tasks[0].pk, tasks[1].pk]
    )
    event = DataAuditEvent.objects.get(action="tasks_bulk_changed")
    assert (event.actor, event.project_id, event.subject) == (
        admin_user,
        project.pk,
        f"project:{project.pk}:set_priority",
    )
    assert event.details == {
        "action": "set_priority",
        "scope": "filtered",
        "filters": {"kind": "pairwise", "status": "open"},
        "tasks": 4,
        "changed": 4,
        "skipped": 0,
        "priority": 5,
    }


def test_bulk_on_the_filtered_set_refuses_a_stale_count_and_too_many_tasks(
    client_for, admin_user, project, data, monkeypatch
):
    tasks, _ann, _ = data
    client = client_for(admin_user)
    url = f"/api/projects/{project.pk}/explorer/bulk/"
    body = {"action": "set_priority", "priority": 5, "filters": {"status": "open"}}
    # the set grew since the person saw 3: nothing changes, and the answer gives the new count
    answer = client.post(url, {**body, "expected_count": 3}, format="json")
    assert answer.status_code == 409
    assert answer.json()["error"] == "count_changed"
    assert answer.json()["count"] == 4
    assert "not the 3 you confirmed" in answer.json()["detail"]
    # above the limit: refused, naming the filters
    monkeypatch.setattr("annotation.explorer.services.MAX_BULK_TASKS", 3)
    answer = client.post(url, {**body, "expected_count": 4}, format="json")
    assert answer.status_code == 400
    assert answer.json()["field"] == "filters"
    assert "more than 3 tasks" in answer.json()["detail"]
    # a bad filter, an unknown one, and filters without a count are 400s naming the field
    answer = client.post(url, {**body, "filters": {"status": "no"}, "expected_count": 4}, "json")
    assert (answer.status_code, answer.json()["field"]) == (400, "status")
    answer = client.post(url, {**body, "filters": {"colour": "red"}, "expected_count": 4}, "json")
    assert answer.status_code == 400
    assert "colour" in str(answer.json()["filters"])
    answer = client.post(url, body, format="json")
    assert answer.status_code == 400
    assert "expected_count" in answer.json()
    answer = client.post(url, {**body, "task_ids": [tasks[2].pk], "expected_count": 4}, "json")
    assert answer.status_code == 400
    assert "task_ids" in answer.json()
    assert not Task.objects.filter(priority=5).exists()
    assert not DataAuditEvent.objects.filter(action="tasks_bulk_changed").exists()


def test_bulk_on_the_filtered_set_needs_the_capability_before_the_body_is_judged(
    client_for, project, data, member
):
    annotator = member(Role.ANNOTATOR, "cleo")
    engineer = member(Role.ENGINEER, "eng2")
    url = f"/api/projects/{project.pk}/explorer/bulk/"
    body = {"action": "reopen", "filters": {}, "expected_count": 6}
    assert client_for(annotator).post(url, {"nonsense": 1}, format="json").status_code == 403
    assert client_for(engineer).post(url, body, format="json").status_code == 403
    assert Task.objects.filter(status=TaskStatus.DONE).count() == 2


def test_a_proposal_decision_is_not_sent_to_adjudication(client_for, admin_user, project):
    # (a confirm task's decision is final: it can be neither edited nor undone, so a reviewer
    # has nothing to overrule, and the review page has no form for it; before, it was queued
    # and stayed in the review queue for good)
    from annotation.models import Prompt, ProposalKind

    source = Prompt.objects.create(
        project=project, messages=[{"role": "user", "content": "Boil an egg?"}], content_hash="e"
    )
    (proposal,) = services.proposals_store(
        project=project,
        kind=ProposalKind.PROMPT_VARIANT,
        model_name="policy@v2",
        proposals=[{"prompt_id": source.pk, "text": "How to boil an egg?", "generation": {}}],
    )
    Task.objects.filter(pk=proposal.task_id).update(label_count=1, status=TaskStatus.DONE)
    answer = client_for(admin_user).post(
        f"/api/projects/{project.pk}/explorer/bulk/",
        {"action": "send_to_adjudication", "task_ids": [proposal.task_id]},
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json()["changed"] == 0
    assert answer.json()["skipped"] == [
        {"task_id": proposal.task_id, "reason": "a proposal's decision is final"}
    ]
    assert not AdjudicationRequest.objects.exists()
    # nor decided through the API
    decided = client_for(admin_user).post(
        f"/api/tasks/{proposal.task_id}/review/",
        {"payload": {"decision": "confirm"}, "reason": "fine"},
        format="json",
    )
    assert decided.status_code == 409
    assert decided.json()["error"] == "decision_final"
