"""Annotators under faults: dropped responses, retries, and PostgreSQL restarted mid-run.

    python bench/chaos.py --annotators 200 --seconds 120 --drop-rate 0.3 --restart-postgres

What it does, against PostgreSQL at ``DATABASE_URL``:
1. seeds a fresh project (pairwise tasks, overlap k=3) and one API token per annotator;
2. starts the platform as a separate process (gunicorn, threaded workers) and, in front of it,
   a small HTTP proxy that forwards every request but, for ``--drop-rate`` of the label
   submits, throws the response away before it reaches the client: the label is stored, the
   client never hears so, and retries with the same ``Idempotency-Key``;
3. runs the annotators (asyncio, one connection per request): claim the next task, submit,
   retry until acknowledged; with ``--restart-postgres``, restarts PostgreSQL halfway
   (``pg_ctlcluster --skip-systemctl-redirect <version> main restart``) while the server keeps
   running, which must recover on its own (``CONN_HEALTH_CHECKS``);
4. prints, as its last line, one JSON object: ``annotators``, ``acked_labels``, ``db_labels``,
   ``duplicates`` (a (task, annotator) pair with two labels, or two label ids acknowledged for
   it), ``lost`` (acknowledged, not in the database), ``overlap_violations`` (tasks with more
   than k labels) and ``error_seconds_after_restart`` (from the restart to the last failed
   request; null without a restart). Targets: 0 / 0 / 0 and <= 30 s.

Restarting PostgreSQL breaks every other client of that server for a few seconds: the test
suite runs the short version without it (tests/reliability/test_chaos.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBMIT_PATH = "/labels/"


# ----------------------------------------------------------------------------- seeding


def seed(*, annotators: int, tasks: int, overlap: int) -> dict:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from annotation import importers, services
    from annotation.roles import Role

    run = uuid.uuid4().hex[:8]
    User = get_user_model()
    owner = User.objects.create_user(f"chaos-{run}-owner", is_staff=True)
    project = services.project_create(
        name=f"Chaos {run}", created_by=owner, overlap=overlap, task_kinds=["pairwise"]
    )
    users = User.objects.bulk_create(
        [User(username=f"chaos-{run}-{i}", password="!") for i in range(annotators)]
    )
    users = list(User.objects.filter(username__startswith=f"chaos-{run}-").exclude(pk=owner.pk))
    for user in users:
        services.membership_set(project=project, user=user, role=Role.ANNOTATOR)
    tokens = {
        u.pk: services.api_token_create(user=u, name="chaos", scope="annotate").secret
        for u in users
    }
    rows = "\n".join(
        json.dumps({"prompt": f"chaos {run} question {i}?",
                    "responses": [f"answer A {i}", f"answer B {i}"]})
        for i in range(tasks)
    )  # fmt: skip
    importers.import_file(
        project=project, data=rows.encode(), filename="chaos.jsonl", kind="responses",
        created_by=owner,
    )  # fmt: skip
    from django.db import connections

    connections.close_all()
    return {"project_id": project.pk, "tokens": tokens}


def measure(project_id: int, acked: dict) -> dict:
    from django.db import connections
    from django.db.models import Count, F

    from annotation.models import Label, Task

    connections.close_all()  # PostgreSQL may have restarted under an old connection
    labels = Label.objects.filter(task__project_id=project_id)
    db_ids = set(labels.values_list("id", flat=True))
    db_pairs = (
        labels.values("task_id", "annotator_id").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    acked_ids = {label_id for ids in acked.values() for label_id in ids}
    double_acks = sum(1 for ids in acked.values() if len(ids) > 1)
    over = (
        Task.objects.filter(project_id=project_id)
        .annotate(n=Count("labels"))
        .filter(n__gt=F("required_labels"))
        .count()
    )
    return {
        "acked_labels": len(acked),
        "db_labels": len(db_ids),
        "duplicates": db_pairs + double_acks,
        "lost": len(acked_ids - db_ids),
        "overlap_violations": over,
    }


# ----------------------------------------------------------------------------- server + proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, database_url: str, workers: int, threads: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TANDEM_LOG_LEVEL": "CRITICAL",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application",
         "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread",
         "--workers", str(workers), "--threads", str(threads),
         "--timeout", "120", "--graceful-timeout", "5", "--log-level", "critical"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def read_http(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP/1.1 message with a Content-Length (or none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return head, body


@dataclass
class Proxy:
    upstream_port: int
    drop_rate: float
    rng: random.Random
    dropped: int = 0

    async def handle(self, reader, writer):
        try:
            head, body = await read_http(reader)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head + body)
            await up_writer.drain()
            response = await up_reader.read(-1)  # the server closes: Connection: close
            up_writer.close()
            request_line = head.split(b"\r\n", 1)[0]
            is_submit = request_line.startswith(b"POST") and SUBMIT_PATH.encode() in request_line
            if is_submit and self.rng.random() < self.drop_rate:
                self.dropped += 1  # stored by the server, never seen by the client
            else:
                writer.write(response)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


# ----------------------------------------------------------------------------- annotators


@dataclass
class Stats:
    acked: dict = field(default_factory=dict)  # (task, annotator) -> {label ids acknowledged}
    errors: list = field(default_factory=list)  # monotonic times of failed requests
    submits: int = 0
    retries: int = 0
    refused: int = 0


async def call(port: int, method: str, path: str, token: str, body=None, key=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else b""
    headers = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Token {token}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    if key:
        headers.append(f"Idempotency-Key: {key}")
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    if not raw:
        raise ConnectionResetError("response dropped")
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, payload


async def annotator(port, project_id, user_id, token, deadline, stats: Stats, rng):
    while time.monotonic() < deadline:
        try:
            status, payload = await call(port, "POST", f"/api/projects/{project_id}/tasks/next/",
                                         token, {})  # fmt: skip
        except (TimeoutError, OSError):
            stats.errors.append(time.monotonic())
            await asyncio.sleep(0.2 + rng.random() * 0.3)
            continue
        if status == 204:
            await asyncio.sleep(0.5)
            continue
        if status != 200:
            if status >= 500:
                stats.errors.append(time.monotonic())
            await asyncio.sleep(0.2 + rng.random() * 0.3)
            continue
        task_id = json.loads(payload)["task_id"]
        key = uuid.uuid4().hex
        body = {"payload": {"choice": rng.choice(["left", "right", "tie"])}}
        if body["payload"]["choice"] != "tie":
            body["payload"]["strength"] = "clear"
        attempt = 0
        # Retry until acknowledged, also past the deadline: an annotator does not walk away
        # from a label it has submitted.
        while True:
            attempt += 1
            stats.submits += 1
            try:
                status, payload = await call(port, "POST", f"/api/tasks/{task_id}/labels/",
                                             token, body, key=key)  # fmt: skip
            except (TimeoutError, OSError):
                status = None
            if status in (200, 201):
                label_id = json.loads(payload)["id"]
                stats.acked.setdefault((task_id, user_id), set()).add(label_id)
                break
            if status is not None and status < 500:
                stats.refused += 1  # e.g. the lease expired during an outage: not acknowledged
                break
            if status is not None:
                stats.errors.append(time.monotonic())
            stats.retries += 1
            if attempt > 200:
                break
            await asyncio.sleep(min(2.0, 0.05 * attempt) + rng.random() * 0.1)
        await asyncio.sleep(rng.random() * 0.05)


def restart_postgres(at: float, done: dict) -> None:
    time.sleep(max(0.0, at - time.monotonic()))
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    done["started"] = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    done["finished"] = time.monotonic()


async def wait_ready(port: int, token: str, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status, _ = await call(port, "GET", "/api/me/", token, timeout=5)
            if status == 200:
                return
        except (TimeoutError, OSError):
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("the server did not start")


async def run(args, seeded) -> tuple[Stats, dict, int]:
    rng = random.Random(args.seed)
    server_port, proxy_port = free_port(), free_port()
    server = start_server(server_port, args.database_url, args.workers, args.threads)
    restart: dict = {}
    try:
        proxy = Proxy(server_port, args.drop_rate, random.Random(args.seed + 1))
        listener = await asyncio.start_server(proxy.handle, "127.0.0.1", proxy_port, backlog=1024)
        tokens = list(seeded["tokens"].items())
        await wait_ready(server_port, tokens[0][1])
        stats = Stats()
        start = time.monotonic()
        deadline = start + args.seconds
        if args.restart_postgres:
            at = start + args.seconds * args.restart_at
            threading.Thread(target=restart_postgres, args=(at, restart), daemon=True).start()
        await asyncio.gather(*[
            annotator(proxy_port, seeded["project_id"], user_id, token, deadline, stats,
                      random.Random(rng.random()))
            for user_id, token in tokens
        ])  # fmt: skip
        listener.close()
        return stats, restart, proxy.dropped
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--drop-rate", type=float, default=0.3)
    parser.add_argument("--restart-postgres", action="store_true")
    parser.add_argument("--restart-at", type=float, default=0.5, help="fraction of the run")
    parser.add_argument("--tasks", type=int, default=None, help="default: enough for the run")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database (migrated)")
    os.environ["DATABASE_URL"] = args.database_url
    tasks = args.tasks or max(200, int(args.annotators * args.seconds * 1.5 / args.overlap))
    seeded = seed(annotators=args.annotators, tasks=tasks, overlap=args.overlap)
    stats, restart, dropped = asyncio.run(run(args, seeded))
    result = {
        "annotators": args.annotators,
        **measure(seeded["project_id"], stats.acked),
        "error_seconds_after_restart": None,
    }
    if restart.get("started"):
        after = [t for t in stats.errors if t >= restart["started"]]
        result["error_seconds_after_restart"] = round(
            (max(after) - restart["started"]) if after else 0.0, 1
        )
    print(
        f"tasks {tasks}, submits {stats.submits}, responses dropped {dropped}, retries "
        f"{stats.retries}, refused {stats.refused}, failed requests {len(stats.errors)}"
        + (
            f", PostgreSQL restart took {restart['finished'] - restart['started']:.1f} s"
            if restart.get("finished")
            else ""
        ),
        file=sys.stderr,
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
