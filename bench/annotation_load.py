"""Load benchmark of the annotation loop: N annotators doing next/submit over HTTP.

    python bench/annotation_load.py --tasks 1000000 --annotators 32 --seconds 60

What it does, for a baseline of ``--baseline-tasks`` (10k) and then for ``--tasks``:

1. creates its own database next to ``DATABASE_URL``'s (``<name>_bench<pid>``, dropped at the end)
   from a template migrated once, and seeds one project with overlap ``--overlap`` and that many
   pairwise tasks (a prompt, two Markdown responses and two task items each) through COPY, with
   the same content hashes the importers compute;
2. starts the server as a separate process, as production runs it (``TANDEM_ENV=production``,
   ``DEBUG=0``): gunicorn with ``--preload`` and gthread workers (2 x 8 threads, keep-alive)
   by default; ``--server`` picks another to compare (gunicorn-sync, uvicorn, daphne);
3. runs ``--annotators`` client threads (keep-alive ``http.client``, one connection each) that
   loop: ``POST tasks/next/`` → think → ``POST tasks/{id}/labels/`` with a fresh
   ``Idempotency-Key`` (a transport error resends it unchanged; ``--replay-rate`` of the submits
   are sent twice on purpose, as if the first answer had been lost, and must replay the same
   label);
4. checks the database afterwards: ``lost`` (acknowledged label ids not in the table),
   ``duplicates`` ((task, annotator) pairs with more than one label), ``overlap_violations``
   (tasks with more labels than ``required_labels``) and ``label_count_mismatch`` (tasks whose
   kept ``label_count`` differs from their labels).

Each run prints one JSON line; the last line is the ``--tasks`` run with the p95 ratios against
the baseline. Latencies are wall-clock at the client, from sending the request to reading the
whole answer.

Think time. A person reads a prompt and two answers before choosing: seconds to tens of seconds
per pairwise label. ``--think-ms M`` (default 2000) waits a uniform 0.5M..1.5M between being
shown a task and submitting it (and sends that as ``duration_ms``), so the default models 32
unusually fast annotators (one label every ~2 s each); each starts at a random point of a
think time rather than all in the same millisecond. ``--think-ms 0`` is closed-loop: each
client sends its next request the moment the previous answer arrives, a stress test of
throughput whose latencies are mostly queueing (Little's law: annotators / throughput); both
are worth reporting. Every JSON line says which it was (``think_ms``).

Rerun: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/annotation_load.py
--tasks 1000000 --annotators 32 --seconds 60 [--think-ms 0]`` (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "gunicorn-sync", "uvicorn", "daphne")
# The server's and this process's secret key: an API token is bound to its user's password
# fingerprint, an HMAC under the secret key, so tokens made here must be checked under it.
BENCH_SECRET_KEY = secrets.token_urlsafe(64)
# The server's field-encryption key, shared with this process when it writes through the ORM.
BENCH_FIELD_KEYS = Fernet.generate_key().decode()


@dataclass
class BenchConfig:
    tasks: int = 1_000_000
    """Pairwise tasks seeded for the main run."""
    baseline_tasks: int = 10_000
    """Tasks of the baseline run printed first (0 skips it); the p95 ratio compares to it."""
    annotators: int = 32
    """Concurrent annotator clients (threads), each with its own account and API token."""
    seconds: float = 60.0
    """How long the clients run, per run."""
    overlap: int = 3
    """k: different annotators per task."""
    think_ms: float = 2000.0
    """Mean think time between seeing a task and submitting it (ms); 0 is closed-loop."""
    replay_rate: float = 0.02
    """Share of submits sent a second time with the same Idempotency-Key."""
    server: str = "gunicorn"
    """gunicorn (gthread workers: keep-alive, threads), gunicorn-sync (one request per
    connection), uvicorn (ASGI workers) or daphne (ASGI, one process)."""
    workers: int = 2
    """Server worker processes (daphne runs one)."""
    threads: int = 8
    """Threads per gunicorn gthread worker."""
    port: int = 0
    """Server port; 0 picks a free one."""
    keep_db: bool = False
    """Keep the benchmark database after the run (to look at it with psql)."""
    seed: int = 1
    """Seed of the clients' choices and think times."""
    database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))


# --------------------------------------------------------------------------- database


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _conninfo(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(_conninfo(_with_dbname(url, "postgres")), autocommit=True)


def database_create_from_template(base_url: str, name: str, template: str) -> None:
    with _admin(base_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def database_drop(base_url: str, name: str) -> None:
    with _admin(base_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def template_migrate(base_url: str, template: str) -> None:
    """A freshly migrated database that every run is copied from (CREATE DATABASE ... TEMPLATE)."""
    with _admin(base_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{template}"')
    env = {**os.environ, "DATABASE_URL": _with_dbname(base_url, template), "DJANGO_DEBUG": "0"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


# --------------------------------------------------------------------------- seeding

PARAGRAPHS = [
    "The short answer is **yes**, but it depends on what you measure and over which period.",
    "Start with the simplest version that works, then profile it before changing anything.",
    "A common mistake is to treat the symptom instead of the cause; check the inputs first.",
    "Here is how I would approach it, step by step, with the trade-offs of each choice.",
    "If the data are noisy, average over several runs and report the spread, not one number.",
    "Keep the interface small: one function that does one thing is easier to test and reuse.",
]
BULLETS = [
    "measure the baseline",
    "change one thing at a time",
    "write down what you expected",
    "compare against the baseline",
    "keep the change only if it helps",
    "document *why*, not what",
]
QUESTIONS = [
    "How should I speed up a slow database query in a web application?",
    "What is a good way to learn a new programming language in a month?",
    "Can you explain the difference between a process and a thread?",
    "How do I write a polite email declining a job offer?",
    "What should I check before deploying a service to production?",
    "Why does my sourdough bread come out dense, and how can I fix it?",
]


def _response_text(i: int, variant: int) -> str:
    # Arithmetic instead of random.Random: seeding a generator per response costs more than
    # everything else here, and a million tasks need two responses each.
    n = 2 * i + variant
    first, second = PARAGRAPHS[n % 6], PARAGRAPHS[(n + 3) % 6]
    bullets = [BULLETS[(n + step) % 6] for step in (0, 2, 5)]
    code = f"\n```python\nresult = solve(case={i}, variant={variant})\n```\n" if variant else ""
    return (
        f"{first} (case {i}, answer {'AB'[variant]})\n\n"
        + "\n".join(f"{k}. {b}" for k, b in enumerate(bullets, 1))
        + f"\n\n{second}\n{code}"
    )


def _messages(i: int) -> list[dict]:
    question = f"{QUESTIONS[i % len(QUESTIONS)]} (#{i})"
    if i % 5:
        return [{"role": "user", "content": question}]
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "Could you tell me a little more about your setup?"},
        {"role": "user", "content": f"Sure: it is case {i}, nothing unusual."},
    ]


def _copy_text(value: str) -> str:
    """A value for COPY's text format."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _columns(model, names: list[str]) -> str:
    return ", ".join(model._meta.get_field(n).column for n in names)


def seed_tasks(run_url: str, *, project_id: int, tasks: int, overlap: int) -> float:
    """COPY ``tasks`` pairwise tasks (prompts, responses, tasks, items) into the database.

    Ids are assigned here (prompt i, task i, responses and items 2i-1 and 2i), so the four
    streams are written side by side in chunks; foreign-key triggers are off for the load
    (``session_replication_role = replica``) because the ids are consistent by construction,
    and the secondary indexes and unique constraints are dropped before the load and built
    again after it (a sorted build beats a million random inserts into each of them).
    """
    from annotation.models import Prompt, Response, Task, TaskItem
    from annotation.services import prompt_messages_hash, task_content_hash, text_hash

    started = time.perf_counter()
    tables = {
        Prompt: ["id", "project", "messages", "content_hash", "source", "metadata", "created_at"],
        Response: [
            "id", "prompt", "text", "content_hash", "origin", "model_name", "generation",
            "created_at",
        ],
        Task: [
            "id", "project", "prompt", "kind", "required_labels", "label_count", "status",
            "priority", "content_hash", "source", "metadata", "created_at",
        ],
        TaskItem: ["id", "task", "response", "position"],
    }  # fmt: skip
    conns = [psycopg.connect(_conninfo(run_url)) for _ in tables]
    try:
        rebuild = [_secondary_indexes_drop(conn, model._meta.db_table) for conn, model in
                   zip(conns, tables, strict=True)]  # fmt: skip
        copies = []
        for conn, (model, names) in zip(conns, tables.items(), strict=True):
            conn.execute("SET session_replication_role = replica")
            cursor = conn.cursor()
            cm = cursor.copy(f"COPY {model._meta.db_table} ({_columns(model, names)}) FROM STDIN")
            copies.append((cm, cm.__enter__()))
        now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
        chunk = 5_000
        for start in range(1, tasks + 1, chunk):
            prompts, responses, task_rows, items = [], [], [], []
            for i in range(start, min(start + chunk, tasks + 1)):
                messages = _messages(i)
                prompt_hash = prompt_messages_hash(messages)
                prompts.append(
                    f"{i}\t{project_id}\t{_copy_text(json.dumps(messages))}\t{prompt_hash}"
                    f"\tbench\t{{}}\t{now}\n"
                )
                hashes = []
                for variant in (0, 1):
                    response_id = 2 * i - 1 + variant
                    text = _response_text(i, variant)
                    digest = text_hash(text)
                    hashes.append(digest)
                    responses.append(
                        f"{response_id}\t{i}\t{_copy_text(text)}\t{digest}\tmodel"
                        f"\tbench-model-{'ab'[variant]}\t{{}}\t{now}\n"
                    )
                    items.append(f"{response_id}\t{i}\t{response_id}\t{variant}\n")
                task_hash = task_content_hash("pairwise", prompt_hash, hashes)
                task_rows.append(
                    f"{i}\t{project_id}\t{i}\tpairwise\t{overlap}\t0\topen\t0\t{task_hash}"
                    f"\tbench\t{{}}\t{now}\n"
                )
            for (_, copy), rows in zip(copies, (prompts, responses, task_rows, items), strict=True):
                copy.write("".join(rows))
        for cm, _ in copies:
            cm.__exit__(None, None, None)
        for conn, model in zip(conns, tables, strict=True):
            table = model._meta.db_table
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
            conn.commit()
        conns[0].execute("SET maintenance_work_mem = '256MB'")
        for statements in rebuild:
            for statement in statements:
                conns[0].execute(statement)
        conns[0].commit()
    finally:
        for conn in conns:
            conn.close()
    with psycopg.connect(_conninfo(run_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        # Flush the load's WAL now rather than in a checkpoint during the measured minute.
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


def _secondary_indexes_drop(conn: psycopg.Connection, table: str) -> list[str]:
    """Drop ``table``'s unique constraints and indexes but the primary key; return how to
    build them again."""
    rebuild, drop = [], []
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'u'",
        [table],
    ).fetchall()
    for name, definition in constraints:
        drop.append(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    indexes = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        [table],
    ).fetchall()
    for name, definition in indexes:
        drop.append(f"DROP INDEX {name}")
        rebuild.append(definition)
    for statement in drop:
        conn.execute(statement)
    return rebuild


def seed_people(*, annotators: int, overlap: int) -> tuple[int, list[str]]:
    """The project, its owner and ``annotators`` members with API tokens (through the ORM)."""
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Membership
    from annotation.roles import Role

    user_model = get_user_model()
    owner = services.user_create(username="bench-owner", password=None, is_staff=True)
    project = services.project_create(name="Load benchmark", created_by=owner, overlap=overlap)
    users = user_model.objects.bulk_create(
        user_model(username=f"bench-annotator-{n}", password="!") for n in range(annotators)
    )
    Membership.objects.bulk_create(
        Membership(project=project, user=u, role=Role.ANNOTATOR) for u in users
    )
    tokens = [
        services.api_token_create(user=u, name="load benchmark", scope="annotate").secret
        for u in users
    ]
    return project.pk, tokens


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(cfg: BenchConfig, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    if cfg.server == "gunicorn-sync":
        return [str(bin_dir / "gunicorn"), "config.wsgi:application", "--preload", "-b", bind,
                "-w", str(cfg.workers), "--backlog", "2048"]  # fmt: skip
    if cfg.server == "gunicorn":
        # Keep-alive longer than a person takes per task (gunicorn's default is 2 s), as a
        # proxy in front would keep a browser's connection open.
        return [str(bin_dir / "gunicorn"), "config.wsgi:application", "--preload", "-b", bind,
                "-w", str(cfg.workers), "-k", "gthread", "--threads", str(cfg.threads),
                "--keep-alive", "75", "--backlog", "2048"]  # fmt: skip
    if cfg.server == "uvicorn":
        return [str(bin_dir / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(cfg.workers), "--no-access-log",
                "--lifespan", "off"]  # fmt: skip
    if cfg.server == "daphne":
        return [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                "config.asgi:application"]  # fmt: skip
    raise SystemExit(f"unknown server {cfg.server!r}; pick one of {SERVERS}")


def server_start(
    cfg: BenchConfig, run_url: str, port: int, log: Path, *, secret_key: str | None = None
) -> subprocess.Popen:
    """The server as production runs it; ``secret_key`` (default: a fresh one) for callers
    that make sessions or read task refs themselves."""
    env = {
        **os.environ,
        "DATABASE_URL": run_url,
        "TANDEM_ENV": "production",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secret_key or BENCH_SECRET_KEY,
        "TANDEM_FIELD_KEYS": BENCH_FIELD_KEYS,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "TANDEM_SSL_REDIRECT": "0",
        "TANDEM_LOG_LEVEL": "ERROR",
    }
    if cfg.server in ("uvicorn", "daphne"):
        env["TANDEM_DB_CONN_MAX_AGE"] = "0"  # see config/settings.py: ASGI leaks them
    proc = subprocess.Popen(
        server_command(cfg, port),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/me/")
            conn.getresponse().read()
            conn.close()
        except OSError:
            time.sleep(0.2)
            continue
        # The first worker answers before the master has forked the others; wait for all,
        # so that every one of them is counted in the server's CPU time.
        workers = 0 if cfg.server == "daphne" else cfg.workers
        while len(psutil.Process(proc.pid).children()) < workers:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return proc
    server_stop(proc)
    raise SystemExit(f"the server did not answer in 60 s:\n{log.read_text()[-3000:]}")


def server_stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


# --------------------------------------------------------------------------- clients


@dataclass
class ClientStats:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    replay_ms: list[float] = field(default_factory=list)
    acked: list[tuple[int, int, int]] = field(default_factory=list)  # (task, annotator, label)
    errors: dict[str, int] = field(default_factory=dict)
    replays_ok: int = 0
    replays_bad: int = 0
    retries: int = 0
    exhausted: int = 0


class Annotator:
    """One person at a keyboard: next task, think, submit; one keep-alive connection."""

    def __init__(self, n: int, token: str, cfg: BenchConfig, port: int, project_id: int):
        self.n = n
        self.cfg = cfg
        self.port = port
        self.project_id = project_id
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.rnd = random.Random(cfg.seed * 1000 + n)
        self.stats = ClientStats()
        self.conn: http.client.HTTPConnection | None = None

    def _post(self, path: str, body: bytes, headers: dict) -> tuple[int, bytes, dict, float]:
        """POST, resending unchanged on a transport error (as the browser does); the time
        counts from the first try."""
        started = time.perf_counter()
        for attempt in range(6):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = (time.perf_counter() - started) * 1000
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return response.status, data, dict(response.getheaders()), elapsed
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                self.stats.retries += 1
                if attempt == 5:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _error(self, what: str, status: int | str) -> None:
        key = f"{what}:{status}"
        self.stats.errors[key] = self.stats.errors.get(key, 0) + 1

    def run(self, barrier: threading.Barrier, deadline: list[float]) -> None:
        barrier.wait()
        try:
            self._loop(deadline[0])
        except Exception as exc:  # a client that dies must show in the figures
            self._error("client", type(exc).__name__)
        finally:
            if self.conn is not None:
                self.conn.close()

    def _loop(self, stop_at: float) -> None:
        if self.cfg.think_ms > 0:
            # People do not all ask for a task in the same millisecond: start each one at a
            # random point of a think time, as if the run began while they were reading.
            # (Closed-loop runs start together: that one is a stress test.)
            time.sleep(self.rnd.uniform(0, self.cfg.think_ms) / 1000)
        next_path = f"/api/projects/{self.project_id}/tasks/next/"
        while time.perf_counter() < stop_at:
            status, data, _, elapsed = self._post(next_path, b"{}", self.headers)
            if status == 204:
                self.stats.exhausted += 1
                return
            if status != 200:
                self._error("next", status)
                time.sleep(0.05)
                continue
            self.stats.next_ms.append(elapsed)
            task_id = json.loads(data)["task_id"]
            think = 0.0
            if self.cfg.think_ms > 0:
                think = self.cfg.think_ms * self.rnd.uniform(0.5, 1.5)
                time.sleep(think / 1000)
            choice = self.rnd.choice(["left", "right", "left", "right", "tie"])
            payload = {"choice": choice}
            if choice != "tie":
                payload["strength"] = self.rnd.choice(["slight", "clear", "strong"])
            body = json.dumps({"payload": payload, "duration_ms": int(think)}).encode()
            headers = {**self.headers, "Idempotency-Key": str(uuid.uuid4())}
            path = f"/api/tasks/{task_id}/labels/"
            status, data, _, elapsed = self._post(path, body, headers)
            if status != 201:
                self._error("submit", status)
                continue
            self.stats.submit_ms.append(elapsed)
            label_id = json.loads(data)["id"]
            self.stats.acked.append((task_id, self.n, label_id))
            if self.rnd.random() < self.cfg.replay_rate:
                status, data, got_headers, elapsed = self._post(path, body, headers)
                self.stats.replay_ms.append(elapsed)
                replayed = got_headers.get("Idempotent-Replayed") == "true"
                if status == 201 and replayed and json.loads(data)["id"] == label_id:
                    self.stats.replays_ok += 1
                else:
                    self.stats.replays_bad += 1


def _percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --------------------------------------------------------------------------- checks


def verify(acked: list[tuple[int, int, int]]) -> dict:
    """Count what the issue asks from the database itself, after the server has stopped."""
    from django.db import connection

    from annotation.models import Label, Task

    label_table, task_table = Label._meta.db_table, Task._meta.db_table
    acked_ids = [label_id for _, _, label_id in acked]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {label_table} WHERE id = ANY(%s)", [acked_ids])  # noqa: S608
        found = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {label_table} "  # noqa: S608
            "GROUP BY task_id, annotator_id HAVING count(*) > 1) d"
        )
        duplicates = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM (SELECT task_id, count(*) AS n FROM {label_table} "  # noqa: S608
            f"GROUP BY task_id) l JOIN {task_table} t ON t.id = l.task_id "
            "WHERE l.n > t.required_labels"
        )
        overlap_violations = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT count(*) FROM {task_table} t LEFT JOIN (SELECT task_id, count(*) AS n "  # noqa: S608
            f"FROM {label_table} GROUP BY task_id) l ON l.task_id = t.id "
            "WHERE t.label_count <> coalesce(l.n, 0)"
        )
        label_count_mismatch = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM {label_table}")  # noqa: S608
        labels_in_db = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM {task_table} WHERE status = 'done'")  # noqa: S608
        tasks_done = cursor.fetchone()[0]
    return {
        "duplicates": duplicates,
        "lost": len(set(acked_ids)) - found,
        "overlap_violations": overlap_violations,
        "label_count_mismatch": label_count_mismatch,
        "labels_in_db": labels_in_db,
        "tasks_done": tasks_done,
    }


# --------------------------------------------------------------------------- one run


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_once(cfg: BenchConfig, tasks: int, run_url: str, template: str) -> dict:
    from django.db import connections

    connections.close_all()
    database_create_from_template(cfg.database_url, _dbname(run_url), template)
    project_id, tokens = seed_people(annotators=cfg.annotators, overlap=cfg.overlap)
    _say(f"seeding {tasks} tasks into {_dbname(run_url)}")
    seed_s = seed_tasks(run_url, project_id=project_id, tasks=tasks, overlap=cfg.overlap)
    connections.close_all()

    port = cfg.port or _free_port()
    log = Path(tempfile.gettempdir()) / f"tandem-bench-server-{os.getpid()}-{tasks}.log"
    _say(f"seeded in {seed_s:.0f} s; starting {cfg.server} on port {port} (log: {log})")
    server = server_start(cfg, run_url, port, log)
    _say(f"running {cfg.annotators} annotators for {cfg.seconds:.0f} s")
    try:
        server_procs = _process_tree(server.pid)
        clients = [Annotator(n, t, cfg, port, project_id) for n, t in enumerate(tokens)]
        barrier = threading.Barrier(len(clients) + 1)
        deadline = [0.0]  # set just before the barrier opens
        threads = [
            threading.Thread(target=c.run, args=(barrier, deadline), daemon=True) for c in clients
        ]
        for t in threads:
            t.start()
        db_sampler = DbCpuSampler(run_url)
        db_sampler.start()
        load_before = os.getloadavg()[0]
        server_cpu0, client_cpu0 = _cpu_seconds(server_procs), time.process_time()
        started = time.perf_counter()
        deadline[0] = started + cfg.seconds
        barrier.wait()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu0
        server_cpu = _cpu_seconds(server_procs) - server_cpu0
        load_after = os.getloadavg()[0]
        db_cpu = db_sampler.total()
    finally:
        server_stop(server)
    stats = ClientStats()
    for c in clients:
        stats.next_ms += c.stats.next_ms
        stats.submit_ms += c.stats.submit_ms
        stats.replay_ms += c.stats.replay_ms
        stats.acked += c.stats.acked
        stats.replays_ok += c.stats.replays_ok
        stats.replays_bad += c.stats.replays_bad
        stats.retries += c.stats.retries
        stats.exhausted += c.stats.exhausted
        for k, v in c.stats.errors.items():
            stats.errors[k] = stats.errors.get(k, 0) + v
    checks = verify(stats.acked)
    connections.close_all()
    requests = len(stats.next_ms) + len(stats.submit_ms) + len(stats.replay_ms)
    result = {
        "tasks": tasks,
        "annotators": cfg.annotators,
        "labels": len(stats.acked),
        "next_p50_ms": round(_percentile(stats.next_ms, 50), 2),
        "next_p95_ms": round(_percentile(stats.next_ms, 95), 2),
        "submit_p50_ms": round(_percentile(stats.submit_ms, 50), 2),
        "submit_p95_ms": round(_percentile(stats.submit_ms, 95), 2),
        "duplicates": checks["duplicates"],
        "lost": checks["lost"],
        "overlap_violations": checks["overlap_violations"],
        "next_p99_ms": round(_percentile(stats.next_ms, 99), 2),
        "submit_p99_ms": round(_percentile(stats.submit_ms, 99), 2),
        "label_count_mismatch": checks["label_count_mismatch"],
        "labels_in_db": checks["labels_in_db"],
        "tasks_done": checks["tasks_done"],
        "labels_per_s": round(len(stats.acked) / wall, 1),
        "requests_per_s": round(requests / wall, 1),
        "replays_ok": stats.replays_ok,
        "replays_bad": stats.replays_bad,
        "transport_retries": stats.retries,
        "errors": stats.errors,
        "queue_exhausted_clients": stats.exhausted,
        "think_ms": cfg.think_ms,
        "closed_loop": cfg.think_ms == 0,
        "overlap": cfg.overlap,
        "server": f"gunicorn-gthread x{cfg.threads}" if cfg.server == "gunicorn" else cfg.server,
        "workers": 1 if cfg.server == "daphne" else cfg.workers,
        "seconds": round(wall, 1),
        "seed_s": round(seed_s, 1),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(requests, 1), 3),
        "client_cpu_share": round(client_cpu / wall, 3),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(requests, 1), 3),
        "db_cpu_ms_per_request": round(db_cpu * 1000 / max(requests, 1), 3),
        "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    if not cfg.keep_db:
        database_drop(cfg.database_url, _dbname(run_url))
    return result


class DbCpuSampler(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving the run's database, sampled every
    second: connections come and go (CONN_MAX_AGE, ASGI), so one look at the end misses some."""

    def __init__(self, run_url: str):
        super().__init__(daemon=True)
        self.run_url = run_url
        self.last: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(_conninfo(self.run_url), autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchall()
                for (pid,) in rows:
                    with contextlib.suppress(psutil.Error):
                        self.last[pid] = _cpu_seconds([psutil.Process(pid)])
                if self.stop.wait(1.0):
                    return

    def total(self) -> float:
        self.stop.set()
        self.join()
        return sum(self.last.values())


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> BenchConfig:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=defaults.tasks)
    parser.add_argument("--baseline-tasks", type=int, default=defaults.baseline_tasks)
    parser.add_argument("--annotators", type=int, default=defaults.annotators)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--overlap", type=int, default=defaults.overlap)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=defaults.think_ms,
        help="mean think time per task in ms (uniform 0.5x..1.5x); 0 = closed loop",
    )
    parser.add_argument("--replay-rate", type=float, default=defaults.replay_rate)
    parser.add_argument("--server", choices=SERVERS, default=defaults.server)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    return BenchConfig(**{k: getattr(args, k) for k in asdict(defaults) if hasattr(args, k)})


def main(argv=None) -> None:
    cfg = parse_args(argv)
    if not cfg.database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database (postgres://...)")
    base = _dbname(cfg.database_url)
    # Named after this process, so two runs against the same server never drop each other's.
    run_name = f"{base}_bench{os.getpid()}"
    template = f"{run_name}_tmpl"
    run_url = _with_dbname(cfg.database_url, run_name)
    _say(f"migrating the template database {template}")
    template_migrate(cfg.database_url, template)
    # This process talks to the run database through Django too (accounts, checks).
    os.environ["DATABASE_URL"] = run_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["DJANGO_SECRET_KEY"] = BENCH_SECRET_KEY
    os.environ["TANDEM_FIELD_KEYS"] = BENCH_FIELD_KEYS
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    try:
        baseline = None
        if cfg.baseline_tasks:
            baseline = run_once(cfg, cfg.baseline_tasks, run_url, template)
            print(json.dumps(baseline), flush=True)
        result = run_once(cfg, cfg.tasks, run_url, template)
        if baseline is not None:
            result["p95_ratio_vs_10k"] = {
                "next": round(result["next_p95_ms"] / baseline["next_p95_ms"], 2),
                "submit": round(result["submit_p95_ms"] / baseline["submit_p95_ms"], 2),
            }
        print(json.dumps(result), flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        database_drop(cfg.database_url, template)
        if not cfg.keep_db:
            database_drop(cfg.database_url, run_name)


if __name__ == "__main__":
    main()
