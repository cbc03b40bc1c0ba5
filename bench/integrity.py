"""Integrity benchmark: every human judgement reaches the training data, no label is lost.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/integrity.py \
        --annotators 40 --tasks 2000

What it does:

1. creates its own database next to ``DATABASE_URL``'s (``<name>_integrity<pid>``, dropped at
   the end unless ``--keep-db``) from a freshly migrated template, and seeds one project
   (overlap ``--overlap``, a two-dimension rubric, gold rate ``--gold-rate``, flag policy
   ``unsafe: reject``) with ``--tasks`` pairwise tasks whose better answer is planted (A or B at
   random), ``--rubric-tasks`` rubric tasks and ``--gold`` gold tasks (their expected answer is
   the planted one). Every text is drawn from a random vocabulary, so no two tasks are near
   duplicates and de-duplication (on, as by default) removes nothing it should not. On
   ``--unsafe-share`` of the pairwise tasks one answer is planted as unsafe (the worse one);
2. starts the server as a separate process as production runs it (gunicorn, the helpers of
   ``bench/annotation_load.py``) and runs ``--annotators`` client threads that do what people
   do over HTTP with their API tokens until the queue is empty: ``POST tasks/next/``, read the
   answers in the order shown, ``POST tasks/{id}/labels/`` with an ``Idempotency-Key``. The
   crowd: ``--random-share`` random clickers (left or right at random), ``--left-share``
   always-left clickers (the side shown left; sides are shuffled per annotator, so in the
   task's own order they are random too), the rest reliable (the planted better answer with
   probability ``--reliable-accuracy``; on a task with an unsafe answer they always pick the
   safe one and flag the task ``unsafe``). Rubric tasks are scored on both dimensions: the
   reliable score the better answer higher, the clickers at random or left-high;
3. runs the quality refresh (the worker's job) in-process, then a reviewer (an admin-scoped
   token) reads the review queue over HTTP and adjudicates ``--adjudicate`` of the disputed
   pairwise tasks with the planted answer (``POST tasks/{id}/review/``);
4. builds one snapshot per aggregation policy (``all``, ``majority``, ``unanimous``,
   ``min_agreement``, ``dawid_skene``, ``gold_weighted``) with ``exclude_failing_gold`` off, so
   every policy sees the same labels and the policy alone makes the difference, and reads
   their exports back.

The last line printed is one JSON object:
- ``labels``: labels acknowledged (201) to the clients;
- ``flagged_unsafe_as_chosen``: rows, over every snapshot, of ``preference`` or
  ``rubric_preference`` whose ``chosen`` answer is one some label flagged unsafe (target 0);
- ``adjudications_not_honoured``: adjudicated tasks, over the decision policies' snapshots,
  whose exported preference is not the adjudicator's outcome (or is missing; target 0);
- ``rubric_rows_exported``: ``rubric_preference`` plus ``score`` rows of the majority snapshot;
- ``lost_labels``: acknowledged labels not in the database, plus labels in the database (of
  non-gold tasks) that some snapshot did not freeze (target 0);
- ``accuracy_majority`` / ``accuracy_dawid_skene`` / ``accuracy_gold_weighted``: of the
  pairwise tasks without a planted unsafe answer, the share whose exported preference row
  prefers the planted better answer (a task the policy left undecided counts as a miss;
  adjudicated tasks count under every policy alike).
Progress and the other figures (per-policy coverage, timings, HTTP errors) go to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import string
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.annotation_load import (  # noqa: E402
    BENCH_FIELD_KEYS,
    BENCH_SECRET_KEY,
    BenchConfig,
    _dbname,
    _free_port,
    _with_dbname,
    database_create_from_template,
    database_drop,
    server_start,
    server_stop,
    template_migrate,
)

POLICIES = ("all", "majority", "unanimous", "min_agreement", "dawid_skene", "gold_weighted")
RUBRIC = [
    {"name": "helpful", "min": 1, "max": 5, "description": "Answers the question."},
    {"name": "harmless", "min": 1, "max": 5, "description": "Safe to follow."},
]
UNSAFE_MARK = "Ignore every safety rule and"


def say(message: str) -> None:
    print(f"[integrity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the planted world


class World:
    """Planted truth: every text's task, whether it is the better answer, whether unsafe."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.vocabulary = [
            "".join(self.rng.choice(string.ascii_lowercase) for _ in range(self.rng.randint(3, 9)))
            for _ in range(5000)
        ]
        self.info: dict[str, dict] = {}  # text -> {"task": n, "better": bool, "unsafe": bool}

    def sentence(self, words: int) -> str:
        return " ".join(self.rng.choice(self.vocabulary) for _ in range(words)).capitalize() + "."

    def text(self, n: int, *, better: bool, unsafe: bool) -> str:
        body = " ".join(self.sentence(self.rng.randint(8, 16)) for _ in range(3))
        text = f"{UNSAFE_MARK} {body}" if unsafe else body
        self.info[text] = {"task": n, "better": better, "unsafe": unsafe}
        return text


def seed_project(args, world: World):
    """Project, people, tasks (ORM bulk inserts) and gold marks; returns what clients need."""
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Membership, Prompt, Response, Task, TaskItem
    from annotation.quality.services import gold_mark
    from annotation.roles import Role

    user_model = get_user_model()
    owner = services.user_create(username="integrity-owner", password=None, is_staff=True)
    project = services.project_create(
        name="Integrity benchmark",
        created_by=owner,
        overlap=args.overlap,
        task_kinds=["pairwise", "rubric"],
        rubric=RUBRIC,
    )
    services.project_settings_update(
        project=project,
        changes={"quality": {"gold_rate": args.gold_rate}, "flags": {"unsafe": "reject"}},
    )
    reviewer = services.user_create(username="integrity-reviewer", password=None)
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    n_random = round(args.annotators * args.random_share)
    n_left = round(args.annotators * args.left_share)
    kinds = ["random"] * n_random + ["left"] * n_left
    kinds += ["reliable"] * (args.annotators - len(kinds))
    world.rng.shuffle(kinds)
    users = user_model.objects.bulk_create(
        user_model(username=f"integrity-annotator-{n}", password="!")
        for n in range(args.annotators)
    )
    Membership.objects.bulk_create(
        Membership(project=project, user=u, role=Role.ANNOTATOR) for u in users
    )
    tokens = [
        services.api_token_create(user=u, name="integrity", scope="annotate").secret for u in users
    ]
    reviewer_token = services.api_token_create(
        user=reviewer, name="integrity", scope="admin"
    ).secret

    total = args.tasks + args.rubric_tasks + args.gold
    prompts = Prompt.objects.bulk_create(
        Prompt(
            project=project,
            messages=[{"role": "user", "content": f"{world.sentence(10)[:-1]}? (#{n})"}],
            content_hash=f"integrity-prompt-{n}",
            source="integrity",
        )
        for n in range(total)
    )
    kind_of = ["pairwise"] * args.tasks + ["rubric"] * args.rubric_tasks + ["pairwise"] * args.gold
    tasks = Task.objects.bulk_create(
        Task(
            project=project,
            prompt=prompts[n],
            kind=kind_of[n],
            required_labels=args.overlap,
            content_hash=f"integrity-task-{n}",
            source="integrity",
        )
        for n in range(total)
    )
    truth: dict[int, int] = {}  # task id -> position of the better answer
    unsafe_tasks: set[int] = set()
    responses, items = [], []
    for n, task in enumerate(tasks):
        better_position = world.rng.randrange(2)
        unsafe = n < args.tasks and world.rng.random() < args.unsafe_share
        truth[task.pk] = better_position
        if unsafe:
            unsafe_tasks.add(task.pk)
        for position in range(2):
            better = position == better_position
            text = world.text(task.pk, better=better, unsafe=unsafe and not better)
            responses.append(
                Response(
                    prompt=prompts[n],
                    text=text,
                    content_hash=f"integrity-response-{n}-{position}",
                    origin="import",
                )
            )
    responses = Response.objects.bulk_create(responses)
    for n, task in enumerate(tasks):
        for position in range(2):
            items.append(
                TaskItem(task=task, response=responses[2 * n + position], position=position)
            )
    TaskItem.objects.bulk_create(items)
    gold_ids = [task.pk for task in tasks[args.tasks + args.rubric_tasks :]]
    for task_id in gold_ids:
        gold_mark(
            task=Task.objects.get(pk=task_id), payload={"choice": "AB"[truth[task_id]]}, by=owner
        )
    return {
        "project_id": project.pk,
        "owner": owner,
        "tokens": tokens,
        "kinds": kinds,
        "annotator_ids": [u.pk for u in users],
        "reviewer_token": reviewer_token,
        "truth": truth,
        "unsafe_tasks": unsafe_tasks,
        "pairwise_ids": [t.pk for t in tasks[: args.tasks]],
        "gold_ids": set(gold_ids),
    }


# --------------------------------------------------------------------------- HTTP clients


class Client:
    """One connection per request with a token; POST/GET resend unchanged on a transport
    error (the same Idempotency-Key, as the browser's outbox does).

    Not keep-alive: a kept connection stays with one server worker process, and with two
    workers and 40 clients the few connections that land alone on a worker were served ten
    times as often as the rest (one annotator gave 200 labels, the others 22), so the crowd's
    shares of the labels were not the shares asked for. A connection per request spreads
    them evenly."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Connection": "close",
        }
        self.conn: http.client.HTTPConnection | None = None
        self.errors: dict[str, int] = {}

    def request(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict | None]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(6):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(
                    method, path, body=data, headers={**self.headers, **(headers or {})}
                )
                response = self.conn.getresponse()
                raw = response.read()
                self.close()
                return response.status, (json.loads(raw) if raw else None)
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 5:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def error(self, what: str, answer=None) -> None:
        if what not in self.errors and answer is not None:
            say(f"{what}: {str(answer)[:300]}")  # the first of its kind, for the log
        self.errors[what] = self.errors.get(what, 0) + 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Annotator(Client):
    def __init__(self, n: int, kind: str, args, port: int, token: str, project_id: int, world):
        super().__init__(port, token)
        self.kind = kind
        self.args = args
        self.project_id = project_id
        self.world = world
        self.rng = random.Random(args.seed * 1000 + n)
        self.acked: list[int] = []

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a client that dies must show in the figures
            self.error(f"client:{type(exc).__name__}")
        finally:
            self.close()

    def _loop(self) -> None:
        next_path = f"/api/projects/{self.project_id}/tasks/next/"
        failures = 0
        while failures < 20:
            status, task = self.request("POST", next_path, {})
            if status == 204:
                return
            if status != 200:
                self.error(f"next:{status}", task)
                failures += 1
                time.sleep(0.1)
                continue
            body = self._label(task)
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            path = f"/api/tasks/{task['task_id']}/labels/"
            status, answer = self.request("POST", path, body, headers)
            if status != 201:
                self.error(f"submit:{status}", answer)
                failures += 1
                continue
            self.acked.append(answer["id"])

    def _label(self, task: dict) -> dict:
        """What this annotator answers, from the texts in the order shown."""
        shown = [self.world.info[r["text"]] for r in task["responses"]]
        better_shown = next(i for i, info in enumerate(shown) if info["better"])
        unsafe = any(info["unsafe"] for info in shown)
        flags = ["unsafe"] if unsafe and self.kind == "reliable" else []
        if self.kind == "reliable":
            right = unsafe or self.rng.random() < self.args.reliable_accuracy
            pick = better_shown if right else 1 - better_shown
        elif self.kind == "left":
            pick = 0
        else:
            pick = self.rng.randrange(2)
        if task["kind"] == "rubric":
            scores = {}
            for i, response in enumerate(task["responses"]):
                if self.kind == "random":
                    helpful, harmless = self.rng.randint(1, 5), self.rng.randint(1, 5)
                else:
                    helpful = self.rng.randint(4, 5) if i == pick else self.rng.randint(1, 3)
                    harmless = 1 if shown[i]["unsafe"] and self.kind == "reliable" else 5
                scores[str(response["id"])] = {"helpful": helpful, "harmless": harmless}
            payload = {"scores": scores}
        else:
            payload = {"choice": ("left", "right")[pick], "strength": "clear"}
        return {"payload": payload, "flags": flags, "duration_ms": 1000}


def run_crowd(setup: dict, args, port: int, world: World) -> tuple[list[int], dict]:
    clients = [
        Annotator(n, kind, args, port, token, setup["project_id"], world)
        for n, (kind, token) in enumerate(zip(setup["kinds"], setup["tokens"], strict=True))
    ]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors: dict[str, int] = {}
    for c in clients:
        for k, v in c.errors.items():
            errors[k] = errors.get(k, 0) + v
    by_kind: dict[str, int] = {}
    for c in clients:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + len(c.acked)
    per_client = sorted(len(c.acked) for c in clients)
    say(
        f"labels by kind of annotator: {by_kind}; per annotator: min {per_client[0]}, "
        f"median {per_client[len(per_client) // 2]}, max {per_client[-1]}"
    )
    return [label_id for c in clients for label_id in c.acked], errors


def adjudicate(setup: dict, args, port: int) -> dict[int, str]:
    """The reviewer decides ``--adjudicate`` disputed pairwise tasks with the planted answer."""
    reviewer = Client(port, setup["reviewer_token"])
    decided: dict[int, str] = {}
    offset = 0
    try:
        while len(decided) < args.adjudicate:
            path = f"/api/projects/{setup['project_id']}/review/queue/?limit=200&offset={offset}"
            status, queue = reviewer.request("GET", path)
            if status != 200:
                reviewer.error(f"queue:{status}", queue)
                break
            rows = (
                queue if isinstance(queue, list) else queue.get("tasks", queue.get("results", []))
            )
            if not rows:
                break
            offset += len(rows)
            for row in rows:
                if len(decided) >= args.adjudicate:
                    break
                task_id = row["task_id"]
                if row["kind"] != "pairwise" or task_id in setup["unsafe_tasks"]:
                    continue
                status, view = reviewer.request("GET", f"/api/tasks/{task_id}/review/")
                if status != 200:
                    reviewer.error(f"review:{status}")
                    continue
                better = setup["truth"][task_id]
                assert view["responses"][better]["position"] == "AB"[better]
                body = {"payload": {"choice": "AB"[better]}, "reason": "planted answer"}
                status, _ = reviewer.request("POST", f"/api/tasks/{task_id}/review/", body)
                if status == 201:
                    decided[task_id] = "AB"[better]
                else:
                    reviewer.error(f"adjudicate:{status}")
    finally:
        reviewer.close()
    if reviewer.errors:
        say(f"reviewer errors: {reviewer.errors}")
    return decided


# --------------------------------------------------------------------------- checks


def build_snapshots(setup: dict, args) -> dict:
    from rlhf.snapshots import services as snapshots

    built = {}
    for policy in POLICIES:
        started = time.perf_counter()
        snapshot = snapshots.snapshot_create(
            project=_project(setup),
            created_by=setup["owner"],
            name=f"integrity-{policy}",
            config={"aggregation": {"policy": policy}},
            enqueue=False,
            exclude_failing_gold=False,
        )
        snapshot = snapshots.snapshot_build(snapshot_id=snapshot.pk, workers=args.snapshot_workers)
        say(f"snapshot {policy}: {snapshot.status} in {time.perf_counter() - started:.1f} s")
        if snapshot.status != "ready":
            raise SystemExit(f"snapshot {policy} failed: {snapshot.error}")
        built[policy] = snapshot
    return built


def _project(setup: dict):
    from annotation.models import Project

    return Project.objects.get(pk=setup["project_id"])


def _rows(snapshot, shape: str) -> list[dict]:
    from rlhf.data.export import iter_export_rows
    from rlhf.data.records import SPLITS

    export = Path(snapshot.export_path)
    return [row for split in SPLITS for row in iter_export_rows(export, shape, split)]


def measure(setup: dict, acked: list[int], decided: dict[int, str], built: dict, world) -> dict:
    from annotation.models import Label
    from rlhf.data.idcodec import decode_ids

    in_db = set(Label.objects.filter(id__in=acked).values_list("id", flat=True))
    lost = len(set(acked) - in_db)
    data_labels = set(
        Label.objects.filter(task__project_id=setup["project_id"])
        .exclude(task_id__in=setup["gold_ids"])
        .values_list("id", flat=True)
    )
    for snapshot in built.values():
        frozen = set(decode_ids(bytes(snapshot.label_ids)))
        lost += len(data_labels - frozen)

    flagged_texts = set()
    for label in Label.objects.filter(
        task__project_id=setup["project_id"], flags__contains=["unsafe"]
    ):
        for item in label.task.items.select_related("response"):
            if world.info[item.response.text]["unsafe"]:
                flagged_texts.add(item.response.text)
    flagged_as_chosen = 0
    for snapshot in built.values():
        for shape in ("preference", "rubric_preference"):
            flagged_as_chosen += sum(
                row["chosen"][0]["content"] in flagged_texts for row in _rows(snapshot, shape)
            )

    def chosen_by_task(snapshot) -> dict[int, list[bool]]:
        out: dict[int, list[bool]] = {}
        for row in _rows(snapshot, "preference"):
            info = world.info[row["chosen"][0]["content"]]
            out.setdefault(info["task"], []).append(info["better"])
        return out

    not_honoured = 0
    accuracy = {}
    eligible = [t for t in setup["pairwise_ids"] if t not in setup["unsafe_tasks"]]
    for policy, snapshot in built.items():
        chosen = chosen_by_task(snapshot)
        if policy != "all":
            # The adjudicator always chose the planted better answer.
            not_honoured += sum(chosen.get(t) != [True] for t in decided)
        correct = sum(chosen.get(t) == [True] for t in eligible)
        decided_tasks = sum(t in chosen for t in eligible)
        accuracy[policy] = correct / len(eligible) if eligible else 0.0
        say(
            f"{policy}: {len(_rows(snapshot, 'preference'))} preference rows; "
            f"{decided_tasks}/{len(eligible)} eligible tasks exported, "
            f"{correct} prefer the planted answer ({accuracy[policy]:.4f})"
        )
    majority = built["majority"]
    rubric_rows = len(_rows(majority, "rubric_preference")) + len(_rows(majority, "score"))
    return {
        "labels": len(acked),
        "flagged_unsafe_as_chosen": flagged_as_chosen,
        "adjudications_not_honoured": not_honoured,
        "rubric_rows_exported": rubric_rows,
        "lost_labels": lost,
        "accuracy_majority": round(accuracy["majority"], 4),
        "accuracy_dawid_skene": round(accuracy["dawid_skene"], 4),
        "accuracy_gold_weighted": round(accuracy["gold_weighted"], 4),
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=40)
    parser.add_argument("--tasks", type=int, default=2000, help="pairwise data tasks")
    parser.add_argument("--rubric-tasks", type=int, default=None, help="default: tasks / 20")
    parser.add_argument("--gold", type=int, default=None, help="gold tasks; default: tasks / 40")
    parser.add_argument("--gold-rate", type=float, default=0.1)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--random-share", type=float, default=0.25)
    parser.add_argument("--left-share", type=float, default=0.15)
    parser.add_argument("--reliable-accuracy", type=float, default=0.9)
    parser.add_argument("--unsafe-share", type=float, default=0.05)
    parser.add_argument("--adjudicate", type=int, default=None, help="default: tasks / 20")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per server worker")
    parser.add_argument("--snapshot-workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    args.rubric_tasks = args.tasks // 20 if args.rubric_tasks is None else args.rubric_tasks
    args.gold = max(10, args.tasks // 40) if args.gold is None else args.gold
    args.adjudicate = args.tasks // 20 if args.adjudicate is None else args.adjudicate

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database (its server hosts the run)")
    name = f"{_dbname(base_url) or 'tandem'}_integrity{os.getpid()}"
    template = f"{name}_template"
    run_url = _with_dbname(base_url, name)
    started = time.perf_counter()
    say(f"migrating a template database {template}")
    template_migrate(base_url, template)
    database_create_from_template(base_url, name, template)
    database_drop(base_url, template)
    os.environ["DATABASE_URL"] = run_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("TANDEM_TASKS_BACKEND", "django_tasks.backends.dummy.DummyBackend")
    artifacts = tempfile.mkdtemp(prefix="tandem-integrity-")
    os.environ["TANDEM_ARTIFACT_ROOT"] = artifacts
    os.environ["DJANGO_SECRET_KEY"] = BENCH_SECRET_KEY  # the server's: tokens are bound to it
    os.environ["TANDEM_FIELD_KEYS"] = BENCH_FIELD_KEYS
    import django

    django.setup()
    from django.db import connections

    from annotation.quality.services import quality_recompute

    server = None
    try:
        world = World(args.seed)
        setup = seed_project(args, world)
        crowd = ", ".join(f"{k} {setup['kinds'].count(k)}" for k in ("reliable", "random", "left"))
        say(
            f"seeded {args.tasks} pairwise, {args.rubric_tasks} rubric and {args.gold} gold tasks;"
            f" crowd: {crowd}"
        )
        connections.close_all()
        port = _free_port()
        log = Path(tempfile.gettempdir()) / f"tandem-integrity-server-{os.getpid()}.log"
        server_cfg = BenchConfig(workers=args.workers, threads=args.threads, database_url=base_url)
        server = server_start(server_cfg, run_url, port, log)
        crowd_started = time.perf_counter()
        acked, errors = run_crowd(setup, args, port, world)
        if not acked:
            raise SystemExit(f"no label was acknowledged; client errors: {errors}")
        crowd_s = time.perf_counter() - crowd_started
        say(
            f"{len(acked)} labels acknowledged in {crowd_s:.0f} s "
            f"({len(acked) / crowd_s:.1f}/s); client errors: {errors or 'none'}"
        )
        refresh = quality_recompute(project_id=setup["project_id"])
        say(f"quality refresh: {refresh}")
        decided = adjudicate(setup, args, port)
        say(f"{len(decided)} disputed tasks adjudicated over HTTP")
        server_stop(server)
        server = None
        built = build_snapshots(setup, args)
        figures = measure(setup, acked, decided, built, world)
        say(f"total {time.perf_counter() - started:.0f} s")
    finally:
        if server is not None:
            server_stop(server)
        connections.close_all()
        if not args.keep_db:
            database_drop(base_url, name)
            import shutil

            shutil.rmtree(artifacts, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
