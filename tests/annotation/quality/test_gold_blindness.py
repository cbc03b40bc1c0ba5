"""Gold stays gold: nothing an annotator receives tells a gold task from an ordinary one."""

import random

import pytest
from rest_framework.test import APIClient

from annotation.models import TaskItem
from annotation.quality import services as quality
from annotation.quality.models import GoldTask

pytestmark = pytest.mark.django_db


def _served_in_order(client, project, n):
    """Claim and label ``n`` tasks through the API; the task views in the order received."""
    views = []
    for _ in range(n):
        view = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
        body = {"payload": {"choice": "left", "strength": "clear"}, "duration_ms": 2_000}
        submitted = client.post(f"/api/tasks/{view['task_id']}/labels/", body, format="json")
        assert submitted.status_code == 201, submitted.json()
        views.append(view)
    return views


def _rises_with_exceptions(ids_in_order, marked):
    """True when the unmarked ids rise in the order served (so the marked ones stand out)."""
    plain = [i for i, m in zip(ids_in_order, marked, strict=True) if not m]
    return plain == sorted(plain)


def test_served_ids_do_not_set_gold_apart(
    queued_tasks, project, admin_user, annotators, make_task, monkeypatch
):
    # given a project whose oldest tasks are gold, mixed in at a rate of one in three
    project.options = {"quality": {"gold_rate": 0.34}}
    project.save(update_fields=["options"])
    tasks = [make_task() for _ in range(30)]
    for gold in tasks[:5]:
        quality.gold_mark(task=gold, payload={"choice": "A"}, by=admin_user)
    gold_ids = set(GoldTask.objects.values_list("task_id", flat=True))
    monkeypatch.setattr(random, "random", random.Random(11).random)
    (ann,) = annotators(1)
    client = APIClient()
    client.force_authenticate(ann)

    # when the annotator claims and labels 15 tasks
    views = _served_in_order(client, project, 15)

    # then some of them were gold (the draw is seeded)
    leases = list(ann.leases.order_by("id").values_list("task_id", flat=True))
    is_gold = [t in gold_ids for t in leases]
    assert 2 <= sum(is_gold) <= 8
    # and no real task id or task item id reached the annotator
    item_pks = set(TaskItem.objects.values_list("pk", flat=True))
    served_tasks = [v["task_id"] for v in views]
    served_items = [r["id"] for v in views for r in v["responses"]]
    assert not set(served_tasks) & set(leases)
    assert not set(served_items) & item_pks
    # and the ordinary tasks' ids do not rise in the order served, so gold ones do not stand out
    assert not _rises_with_exceptions(served_tasks, is_gold)
    # and no threshold on the ids separates gold from ordinary tasks
    gold_served = [t for t, g in zip(served_tasks, is_gold, strict=True) if g]
    plain_served = [t for t, g in zip(served_tasks, is_gold, strict=True) if not g]
    assert not max(gold_served) < min(plain_served)
    assert not min(gold_served) > max(plain_served)
    # and gold and ordinary views carry the same fields with the same lease length
    assert {tuple(sorted(v)) for v in views} == {tuple(sorted(views[0]))}


def test_the_id_an_annotator_sees_reaches_the_same_task_everywhere(
    queued_tasks, no_gold_draws, project, annotators, make_task
):
    # given a task an annotator was served
    task = make_task()
    (ann,) = annotators(1)
    client = APIClient()
    client.force_authenticate(ann)
    view = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    # when they read, heartbeat, and preload past it with the id they were given
    assert client.get(f"/api/tasks/{view['task_id']}/").json() == view
    beat = client.post(f"/api/tasks/{view['task_id']}/heartbeat/").json()
    nothing = client.post(
        f"/api/projects/{project.pk}/tasks/next/", {"exclude": [view["task_id"]]}, format="json"
    )
    # then each names the same task, and the excluded task is not served again
    assert beat["task_id"] == view["task_id"]
    assert nothing.status_code == 204
    assert task.leases.get().annotator == ann
