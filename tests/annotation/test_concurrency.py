"""Many annotators at once, over HTTP against PostgreSQL: the overlap invariant holds."""

import threading
import time
from collections import Counter

import httpx
import pytest
from django.db.models import Count

from annotation import services
from annotation.models import Label, Task
from annotation.roles import Role

CLIENTS = 32
TASKS = 60
OVERLAP = 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_32_parallel_annotators_keep_overlap_exact_and_lose_nothing(live_server, make_user):
    # given a project with overlap 3, 60 pairwise tasks and 32 annotators with API tokens
    owner = make_user("owner", is_staff=True)
    project = services.project_create(name="Load", created_by=owner, overlap=OVERLAP)
    for i in range(TASKS):
        services.task_create(
            project=project,
            messages=[{"role": "user", "content": f"q{i}"}],
            kind="pairwise",
            responses=[{"text": f"a{i}"}, {"text": f"b{i}"}],
        )
    tokens = []
    for i in range(CLIENTS):
        user = make_user(f"annotator{i}")
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
        tokens.append(services.api_token_create(user=user, name="client", scope="annotate").secret)

    acked: list[tuple[int, int]] = []  # (task id, label id) the server acknowledged
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def post(http, url, **kwargs):
        # Like the browser: a request that died on the network is sent again, unchanged (the
        # test server's small listen backlog resets some connections under 32 clients).
        for attempt in range(6):
            try:
                return http.post(url, **kwargs)
            except httpx.TransportError:
                if attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def annotate(token: str, n: int):
        try:
            run(token, n)
        except Exception as exc:  # a dead thread must fail the test, not vanish
            with lock:
                errors.append(f"client {n}: {exc!r}")

    def run(token: str, n: int):
        headers = {"Authorization": f"Token {token}"}
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as http:
            start.wait()
            for step in range(TASKS):
                got = post(http, f"/api/projects/{project.pk}/tasks/next/", json={})
                if got.status_code == 204:
                    return
                if got.status_code != 200:
                    with lock:
                        errors.append(f"next {got.status_code} {got.text[:200]}")
                    return
                task_id = got.json()["task_id"]
                key = f"client{n}-step{step}"
                body = {"payload": {"choice": ["left", "right", "tie"][step % 3]}}
                url = f"/api/tasks/{task_id}/labels/"
                sent = post(http, url, json=body, headers={"Idempotency-Key": key})
                if step % 4 == 0:
                    # a retry as if the first response had been lost on the way back
                    sent = post(http, url, json=body, headers={"Idempotency-Key": key})
                if sent.status_code != 201:
                    with lock:
                        errors.append(f"submit {sent.status_code} {sent.text[:200]}")
                    return
                with lock:
                    acked.append((task_id, sent.json()["id"]))

    # when they all annotate at once until the queue is empty
    threads = [threading.Thread(target=annotate, args=(t, n)) for n, t in enumerate(tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    # then there were no errors, no duplicates, nothing lost and no task above k
    assert errors == []
    label_ids = [label_id for _, label_id in acked]
    assert len(label_ids) == len(set(label_ids))
    stored = set(Label.objects.values_list("id", flat=True))
    assert set(label_ids) <= stored  # 0 lost acknowledged labels
    assert len(stored) == TASKS * OVERLAP  # every task got exactly k labels
    per_task = Counter(task_id for task_id, _ in acked)
    assert max(per_task.values()) == OVERLAP
    duplicates = (
        Label.objects.values("task_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1)
    )
    assert not duplicates.exists()
    assert set(Task.objects.values_list("label_count", "status")) == {(OVERLAP, "done")}


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_task_table_leaves_room_for_in_place_label_count_updates():
    # Migration 0003: bumping label_count must be able to stay on the row's page (HOT).
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'annotation_task'")
        options = cursor.fetchone()[0]
    assert "fillfactor=80" in options
    assert "autovacuum_vacuum_scale_factor=0.02" in options
