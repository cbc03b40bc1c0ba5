"""Label-quality benchmark: full recompute, incremental update and dashboard latency.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/quality.py --labels 1000000

Builds a pairwise project of ``--labels`` labels (overlap 3, a simulated crowd with honest,
random, always-left and very fast annotators) with PostgreSQL COPY, then measures:
- seconds_full_recompute: ``quality_recompute`` rebuilding every cache from the labels;
- seconds_incremental_update: ``quality_refresh`` after 1,000 new labels were committed and
  marked (what the label-submit hook does), i.e. the worker's job;
- dashboard_p95_ms: p95 over ``--requests`` loads of the dashboard (the page and the JSON it
  draws from), through Django's full request stack with a logged-in reviewer.
The last line printed is the JSON of those figures. The project is left in the database
unless ``--cleanup`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("TANDEM_TASKS_BACKEND", "django_tasks.backends.dummy.DummyBackend")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from annotation import services  # noqa: E402
from annotation.models import Label, Prompt, Response, Task, TaskItem  # noqa: E402
from annotation.quality import services as quality  # noqa: E402
from annotation.quality.models import QualityReport  # noqa: E402
from annotation.roles import Role  # noqa: E402

User = get_user_model()
OVERLAP = 3
NEW_LABELS = 1_000
OUTCOMES = ("A", "B", "tie", "both_bad")
TRUTH_WEIGHTS = (0.45, 0.40, 0.10, 0.05)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _next_ids(model, count: int) -> int:
    """Reserve ``count`` ids of ``model``'s sequence; returns the first."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
            "nextval(pg_get_serial_sequence(%s, 'id')) + %s - 1)",
            [table, table, count],
        )
        last = cursor.fetchone()[0]
    return last - count + 1


def _copy(model, columns: list[str], rows) -> None:
    table = model._meta.db_table
    raw = connection.connection  # psycopg 3 connection under Django's wrapper
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def _crowd(n: int, rng: random.Random) -> list[str]:
    """Annotator behaviours: mostly honest, a few random, always-left and too fast."""
    kinds = []
    for i in range(n):
        if i % 20 == 0:
            kinds.append("always_left")
        elif i % 20 == 1:
            kinds.append("random")
        elif i % 20 == 2:
            kinds.append("fast")
        else:
            kinds.append("honest")
    rng.shuffle(kinds)
    return kinds


def build_project(labels: int, annotators: int, seed: int):
    rng = random.Random(seed)
    stamp = time.strftime("%Y%m%d%H%M%S")
    admin = User.objects.create_user(f"bench-admin-{stamp}-{seed}", password=None)
    project = services.project_create(
        name=f"Bench quality {stamp}", created_by=admin, overlap=OVERLAP
    )
    project.options = {"quality": {"gold_rate": 0}}
    project.save(update_fields=["options"])
    users = User.objects.bulk_create(
        [User(username=f"bench-{stamp}-{seed}-a{i}", is_active=True) for i in range(annotators)]
    )
    services.membership_set(project=project, user=admin, role=Role.ADMIN)
    behaviour = dict(zip((u.pk for u in users), _crowd(annotators, rng), strict=True))
    user_ids = [u.pk for u in users]

    tasks = -(-labels // OVERLAP)
    now = timezone.now()
    start = now - timedelta(days=60)
    prompt0, response0 = _next_ids(Prompt, tasks), _next_ids(Response, 2 * tasks)
    task0, item0 = _next_ids(Task, tasks), _next_ids(TaskItem, 2 * tasks)
    label0 = _next_ids(Label, labels)
    log(f"generating {tasks} tasks and {labels} labels from {annotators} annotators")

    all_labels = []  # (task index, annotator, created_at, payload, shown_order, duration)
    task_rows = []
    for t in range(tasks):
        a_id, b_id = response0 + 2 * t, response0 + 2 * t + 1
        truth = rng.choices(OUTCOMES, TRUTH_WEIGHTS)[0]
        count = min(OVERLAP, labels - t * OVERLAP)
        when = start + (now - start) * (t / tasks)
        for annotator in rng.sample(user_ids, count):
            kind = behaviour[annotator]
            swapped = rng.random() < 0.5
            shown = [b_id, a_id] if swapped else [a_id, b_id]
            if kind == "always_left":
                outcome = "B" if swapped else "A"
            elif kind == "random":
                outcome = rng.choice(OUTCOMES)
            elif rng.random() < (0.8 if kind == "honest" else 0.6):
                outcome = truth
            else:
                outcome = rng.choice([o for o in OUTCOMES if o != truth])
            winner = a_id if outcome == "A" else b_id if outcome == "B" else None
            side = None if winner is None else ("left" if shown[0] == winner else "right")
            payload = {
                "outcome": outcome,
                "strength": rng.choice(("slight", "clear", "strong")) if winner else None,
                "winner": winner,
                "chosen_side": side,
                "rationale": "",
            }
            duration = (
                rng.randint(800, 2_500) if kind == "fast" else int(rng.lognormvariate(9.6, 0.6))
            )
            created = when + timedelta(seconds=rng.randint(0, 3_600))
            all_labels.append((t, annotator, created, payload, shown, duration))
        task_rows.append((t, count, when))

    held_out = all_labels[-NEW_LABELS:]
    initial = all_labels[:-NEW_LABELS]
    initial_counts = [0] * tasks
    last_label = [None] * tasks
    for t, _, created, *_ in initial:
        initial_counts[t] += 1
        last_label[t] = max(last_label[t] or created, created)

    log("copying prompts, responses, tasks and items")
    _copy(
        Prompt,
        ["id", "project_id", "messages", "content_hash", "source", "metadata", "created_at"],
        (
            (
                prompt0 + t,
                project.pk,
                json.dumps([{"role": "user", "content": f"Question {t}?"}]),
                f"bench-{stamp}-{seed}-p{t}",
                "bench",
                "{}",
                when,
            )
            for t, _, when in task_rows
        ),
    )
    _copy(
        Response,
        [
            "id",
            "prompt_id",
            "text",
            "content_hash",
            "origin",
            "model_name",
            "generation",
            "created_at",
        ],
        (
            (
                response0 + 2 * t + side,
                prompt0 + t,
                f"Answer {'AB'[side]} to {t}.",
                f"r{t}-{side}",
                "model",
                "bench",
                "{}",
                when,
            )
            for t, _, when in task_rows
            for side in (0, 1)
        ),
    )
    _copy(
        Task,
        [
            "id",
            "project_id",
            "prompt_id",
            "kind",
            "required_labels",
            "label_count",
            "status",
            "priority",
            "content_hash",
            "source",
            "metadata",
            "created_at",
            "completed_at",
        ],
        (
            (
                task0 + t,
                project.pk,
                prompt0 + t,
                "pairwise",
                OVERLAP,
                initial_counts[t],
                "done" if initial_counts[t] >= OVERLAP else "open",
                0,
                f"bench-{stamp}-{seed}-t{t}",
                "bench",
                "{}",
                when,
                last_label[t] if initial_counts[t] >= OVERLAP else None,
            )
            for t, _, when in task_rows
        ),
    )
    _copy(
        TaskItem,
        ["id", "task_id", "response_id", "position"],
        (
            (item0 + 2 * t + p, task0 + t, response0 + 2 * t + p, p)
            for t, _, _ in task_rows
            for p in (0, 1)
        ),
    )
    log(f"copying {len(initial)} labels")
    _copy_labels(label0, task0, initial)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return project, admin, task0, label0 + len(initial), held_out


def _copy_labels(first_id: int, task0: int, rows) -> None:
    columns = [
        "id",
        "task_id",
        "annotator_id",
        "kind",
        "payload",
        "shown_order",
        "flags",
        "duration_ms",
        "source",
        "version",
        "created_at",
        "updated_at",
    ]
    _copy(
        Label,
        columns,
        (
            (
                first_id + i,
                task0 + t,
                annotator,
                "pairwise",
                json.dumps(payload),
                json.dumps(shown),
                "[]",
                duration,
                "ui",
                1,
                created,
                created,
            )
            for i, (t, annotator, created, payload, shown, duration) in enumerate(rows)
        ),
    )


def add_new_labels(project, task0: int, first_id: int, held_out) -> list[int]:
    """Commit 1,000 new labels and mark their tasks, as label_submit and its hook do."""
    _copy_labels(first_id, task0, held_out)
    task_ids = sorted({task0 + t for t, *_ in held_out})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE annotation_task t SET label_count = c.n, "
            "status = CASE WHEN c.n >= t.required_labels THEN 'done' ELSE 'open' END, "
            "completed_at = CASE WHEN c.n >= t.required_labels THEN now() ELSE NULL END "
            "FROM (SELECT task_id, count(*) AS n FROM annotation_label "
            "      WHERE task_id = ANY(%s) GROUP BY task_id) c WHERE t.id = c.task_id",
            [task_ids],
        )
    quality.quality_mark_dirty(project_id=project.pk, task_ids=task_ids)
    return task_ids


def dashboard_p95(project, viewer, requests: int) -> tuple[float, float, float]:
    client = Client()
    client.force_login(viewer)
    page_url = f"/projects/{project.pk}/quality/"
    data_url = f"/api/projects/{project.pk}/quality/"
    for _ in range(5):
        assert client.get(page_url).status_code == 200
        assert client.get(data_url).status_code == 200
    loads, pages, data = [], [], []
    for _ in range(requests):
        t0 = time.perf_counter()
        page = client.get(page_url)
        t1 = time.perf_counter()
        response = client.get(data_url)
        t2 = time.perf_counter()
        assert page.status_code == 200
        assert response.status_code == 200
        pages.append((t1 - t0) * 1000)
        data.append((t2 - t1) * 1000)
        loads.append((t2 - t0) * 1000)

    def p95(values):
        return statistics.quantiles(values, n=20)[-1]

    return p95(loads), p95(pages), p95(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cleanup", action="store_true", help="delete the project afterwards")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("bench/quality.py needs PostgreSQL: set DATABASE_URL=postgres://...")
    if args.labels <= NEW_LABELS:
        sys.exit(f"--labels must exceed the {NEW_LABELS} labels added for the update")
    call_command("migrate", verbosity=0)

    t0 = time.perf_counter()
    project, _admin, task0, next_label, held_out = build_project(
        args.labels, args.annotators, args.seed
    )
    log(f"built project {project.pk} in {time.perf_counter() - t0:.1f} s")

    full = quality.quality_recompute(project_id=project.pk)
    log(f"full recompute: {full.tasks} tasks in {full.seconds:.2f} s")

    touched = add_new_labels(project, task0, next_label, held_out)
    incremental = quality.quality_refresh(project_id=project.pk)
    log(
        f"incremental update: {NEW_LABELS} labels on {len(touched)} tasks "
        f"({incremental.tasks} applied) in {incremental.seconds:.3f} s"
    )

    reviewer = User.objects.create_user(f"bench-reviewer-{project.pk}", password=None)
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    p95_load, p95_page, p95_data = dashboard_p95(project, reviewer, args.requests)
    size = len(QualityReport.objects.get(project=project).report.__repr__())  # approx.
    log(
        f"dashboard p95 over {args.requests} loads: {p95_load:.1f} ms "
        f"(page {p95_page:.1f} ms, report JSON {p95_data:.1f} ms, ~{size // 1024} KiB)"
    )
    labels = Label.objects.filter(task__project=project).count()
    if args.cleanup:
        log("deleting the project")
        project.delete()
    print(
        json.dumps(
            {
                "labels": labels,
                "seconds_full_recompute": round(full.seconds, 2),
                "seconds_incremental_update": round(incremental.seconds, 3),
                "dashboard_p95_ms": round(p95_load, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
