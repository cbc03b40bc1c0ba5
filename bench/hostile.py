"""Hostile input against the running platform, as production runs it.

    python bench/hostile.py --seconds 60

What it does, against PostgreSQL at ``DATABASE_URL``:

1. creates its own database next to ``DATABASE_URL``'s (``<name>_hostile<pid>``, dropped at the
   end) and migrates it; seeds two projects (the attacked one, overlap 1, and a foreign one
   whose ids are used as foreign ids), a project admin, two annotators and a reviewer (a
   reviewer also annotates), each with an API token, and a browser session for the pages;
2. starts the server as production does (``TANDEM_ENV=production``, ``DEBUG=0``, gunicorn with
   ``--preload`` and gthread workers, see docs/architecture.md);
3. for ``--seconds``, goes round its corpus (``CORPUS``: the texts of issue 15's findings and
   more: Markdown bombs, lone surrogates, non-ASCII digits, NUL, bidi controls, huge integers,
   200k-character texts; and ``REQUEST_CASES``: JSON nested 100k deep, integers past 64 bits
   in paths, lists, offsets and seeds, oversized bodies, foreign ids). For each text: imports
   it (as a prompt and as a response), claims tasks and submits labels with it as the
   rationale (annotators and the reviewer), reads the task, the annotator's labels, the
   review queue, final labels, quality report and the pages (annotate, my labels, manage,
   review). While the reviewer holds a lease, and on open tasks, it asks the review view (API
   and page) and other annotators' labels: anything shown is a leaked side;
4. drains the queue (every open task claimed and labelled or skipped) and counts the tasks that
   could not be finished;
5. prints, as its last line, one JSON object: ``cases`` (corpus entries), ``requests``,
   ``server_errors`` (5xx answers, time-outs and dropped connections), ``slowest_ms`` (the
   slowest answer, wall-clock at the client), ``stuck_tasks`` (open tasks nobody could label
   or skip after the drain, plus tasks served again to the same annotator right after an
   error: the lease committed before a 500) and ``leaked_sides`` (review views or other
   people's labels of a sealed task shown, or review payloads carrying a raw response id).
   Targets: 0 server errors, slowest <= 1000 ms, 0 stuck tasks, 0 leaked sides.

Progress and every 5xx (method, path, case) go to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.annotation_load import (  # noqa: E402
    BenchConfig,
    _with_dbname,
    database_drop,
    server_start,
    server_stop,
    template_migrate,
)

# The server and this process share one secret: sessions, token fingerprints and task refs
# are keyed by it.
SECRET_KEY = secrets.token_urlsafe(64)

TOO_BIG = 2**64 + 1
CORPUS: dict[str, str] = {
    "markdown_list_nesting": "* " * 1000 + "x",
    "markdown_brackets_5k": "[" * 5000,
    "markdown_brackets_200k": "[" * 199_000,
    "markdown_quote_nesting": "> " * 5000 + "x",
    "markdown_emphasis_bomb": "*a " * 20_000,
    "markdown_link_bomb": "[a](" * 10_000,
    "markdown_table_bomb": "|" * 5000 + "\n" + "|-" * 2500 + "\n" + "|x" * 2500,
    "markdown_backticks": "`" * 20_000 + "x",
    "markdown_html_mix": "<div>" * 3000 + "**x**",
    "html_script": "<script>alert(1)</script><img src=x onerror=alert(1)><svg onload=alert(1)>",
    "lone_surrogate": "\ud83d",
    "non_ascii_digits": "²³ ١٢ ௫",
    "nul_byte": "a\x00b",
    "bidi_controls": "invoice\u202egpj.exe \u2066x\u2069",
    "huge_integer_text": str(TOO_BIG),
    "long_plain_text": "word " * 39_000,
    "emoji_zwj": "👩\u200d👩\u200d👧\u200d👦" * 2000,
    "combining_marks": "e" + "\u0301" * 10_000,
    "json_lookalike": "[" * 100 + "]" * 100,
    "template_injection": "{{ settings.SECRET_KEY }} {% debug %} ${7*7}",
}
REQUEST_CASES = (
    "deep_json_label",
    "deep_json_token",
    "huge_int_exclude",
    "huge_int_path",
    "huge_int_offset",
    "huge_int_snapshot_seed",
    "non_ascii_digit_rubric_key",
    "surrogate_in_label",
    "oversized_body",
    "foreign_ids",
)


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    slowest_ms: float = 0.0
    slowest: str = ""
    leaked: int = 0
    stuck: set = field(default_factory=set)
    errors: list = field(default_factory=list)


class Client:
    """One keep-alive connection speaking as one identity (token or session cookie)."""

    def __init__(self, port: int, tally: Tally, *, token: str = "", session: str = ""):
        self.port, self.tally = port, tally
        self.headers = {"Host": "127.0.0.1"}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        if session:
            self.headers["Cookie"] = f"sessionid={session}"
        self.conn = None

    def request(self, method, path, body=None, *, content_type="application/json", case=""):
        headers = dict(self.headers)
        path = quote(path, safe="/?&=%:+-")  # non-ASCII digits go out percent-encoded
        if body is not None:
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        start = time.perf_counter()
        status, data = 599, b""
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                status, data = response.status, response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                break
            except (OSError, http.client.HTTPException):
                # A server that refuses a huge body answers before reading it and closes:
                # the send fails, and the answer may still be there to read.
                early = self._early_answer()
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if early is not None:
                    status, data = early
                    break
                if attempt:
                    status = 599  # no answer: counted as a server error
        elapsed = (time.perf_counter() - start) * 1000
        tally = self.tally
        tally.requests += 1
        if elapsed > tally.slowest_ms:
            tally.slowest_ms, tally.slowest = elapsed, f"{method} {path[:80]} [{case}]"
        if status >= 500:
            tally.server_errors += 1
            tally.errors.append(f"{status} {method} {path[:80]} [{case}]")
            print(f"server error {status} {method} {path[:80]} [{case}]", file=sys.stderr)
        return status, data

    def _early_answer(self):
        try:
            response = self.conn.getresponse() if self.conn is not None else None
            return (response.status, response.read()) if response is not None else None
        except (OSError, http.client.HTTPException):
            return None

    def json(self, method, path, body=None, **kwargs):
        status, data = self.request(method, path, body, **kwargs)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None


def _multipart(fields: dict, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())  # fmt: skip
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# ----------------------------------------------------------------------------- seeding


def seed() -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    from annotation import services
    from annotation.roles import Role

    User = get_user_model()
    people = {
        name: User.objects.create_user(f"hostile-{name}", password=secrets.token_urlsafe(16))
        for name in ("admin", "ann1", "ann2", "reviewer", "foreigner")
    }
    project = services.project_create(name="Hostile", created_by=people["admin"], overlap=1)
    foreign = services.project_create(name="Foreign", created_by=people["foreigner"], overlap=1)
    roles = {"ann1": Role.ANNOTATOR, "ann2": Role.ANNOTATOR, "reviewer": Role.REVIEWER}
    for name, role in roles.items():
        services.membership_set(project=project, user=people[name], role=role)
    foreign_task, _ = services.task_create(
        project=foreign,
        messages=[{"role": "user", "content": "foreign question"}],
        kind="pairwise",
        responses=[{"text": f"foreign {s}", "origin": "model", "model_name": "m"} for s in "ab"],
    )
    scopes = {"admin": "admin", "ann1": "annotate", "ann2": "annotate", "reviewer": "annotate"}
    tokens = {
        name: services.api_token_create(user=people[name], name="hostile", scope=scope).secret
        for name, scope in scopes.items()
    }
    sessions = {}
    for name in ("admin", "ann1", "reviewer"):
        store = SessionStore()
        store[SESSION_KEY] = str(people[name].pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = people[name].get_session_auth_hash()
        store.create()
        sessions[name] = store.session_key
    from django.db import connections

    connections.close_all()
    return {
        "project": project.pk,
        "foreign_project": foreign.pk,
        "foreign_task": foreign_task.pk,
        "tokens": tokens,
        "sessions": sessions,
        "users": {name: user.pk for name, user in people.items()},
    }


# ----------------------------------------------------------------------------- the attack


class Attack:
    def __init__(self, port: int, world: dict, tally: Tally):
        self.world, self.tally, self.p = world, tally, world["project"]
        self.api = {n: Client(port, tally, token=t) for n, t in world["tokens"].items()}
        self.page = {n: Client(port, tally, session=s) for n, s in world["sessions"].items()}
        self.last_error_task: dict[str, int | None] = {}

    # ------------------------------------------------------------ helpers

    def _real(self, ref: int) -> int:
        from annotation.opaque import task_id_from_ref

        return task_id_from_ref(ref)

    def claim(self, who: str, case: str, exclude=()):
        status, task = self.api[who].json(
            "POST", f"/api/projects/{self.p}/tasks/next/", {"exclude": list(exclude)}, case=case
        )
        if status == 200 and task:
            ref = task["task_id"]
            if self.last_error_task.get(who) == ref:
                self.tally.stuck.add(ref)  # served again right after an error on it
            self.last_error_task[who] = None
            return task
        if status >= 500:
            self.last_error_task[who] = "unknown"
        return None

    def submit(self, who: str, task: dict, rationale: str, case: str) -> int:
        ids = [r["id"] for r in task.get("responses", [])]
        kind = task.get("kind")
        if kind == "pairwise":
            payload = {"choice": "left", "strength": "clear", "rationale": rationale}
        elif kind == "ranking":
            payload = {"ranking": [[i] for i in ids]}
        elif kind == "rubric":
            payload = {"scores": {str(i): {"helpfulness": 3} for i in ids}}
        else:
            payload = {"corrected_text": rationale[:1000] or "fixed"}
        path = f"/api/tasks/{task['task_id']}/labels/"
        status, _ = self.api[who].json("POST", path, {"payload": payload}, case=case)
        if status >= 400:
            # Hostile rationale refused: the same task with a plain one, so it is not left held.
            payload["rationale"] = "plain"
            status, _ = self.api[who].json("POST", path, {"payload": payload}, case=case)
        if status >= 400:
            self.api[who].json("POST", f"/api/tasks/{task['task_id']}/skip/",
                               {"reason": "hostile bench"}, case=case)  # fmt: skip
        if status >= 500:
            self.last_error_task[who] = task["task_id"]
        return status

    # ------------------------------------------------------------ the per-text round

    def text_round(self, case: str, text: str) -> None:
        admin = self.api["admin"]
        rows = [
            {"prompt": f"{case} {uuid.uuid4().hex[:6]}: {text}",
             "responses": [text, f"a plain answer {uuid.uuid4().hex[:6]}"]},
            {"prompt": f"plain question {uuid.uuid4().hex[:6]}",
             "responses": [f"plain {uuid.uuid4().hex[:6]}", text]},
        ]  # fmt: skip
        data = "\n".join(json.dumps(r) for r in rows).encode()
        body, ctype = _multipart({"kind": "responses"}, f"{case}.jsonl", data)
        admin.request("POST", f"/api/projects/{self.p}/imports/", body, content_type=ctype,
                      case=case)  # fmt: skip
        # the reviewer claims and, holding the lease, asks for the sides and the labels
        held = self.claim("reviewer", case)
        if held:
            self.check_sealed(held, case)
        for who in ("ann1", "ann2"):
            task = self.claim(who, case)
            if task:
                self.api[who].request("GET", f"/api/tasks/{task['task_id']}/", case=case)
                self.submit(who, task, text, case)
        if held:
            self.submit("reviewer", held, text, case)
        self.reads(case)

    def check_sealed(self, held: dict, case: str) -> None:
        task_id = self._real(held["task_id"])
        texts = [r["text"] for r in held["responses"] if len(r["text"]) > 12]
        for client in (self.api["reviewer"], self.page["reviewer"]):
            status, body = client.request("GET", f"/api/tasks/{task_id}/review/", case=case)
            page_status, page = client.request("GET", f"/tasks/{task_id}/review/", case=case)
            for answer_status, answer in ((status, body), (page_status, page)):
                shown = answer.decode("utf-8", "replace")
                if answer_status == 200 or any(t[:200] in shown for t in texts):
                    self.tally.leaked += 1
                    print(f"leaked: review view of held task {task_id} [{case}]", file=sys.stderr)
        from annotation.models import Label

        for label_id in Label.objects.filter(task_id=task_id).values_list("pk", flat=True):
            status, _ = self.api["reviewer"].request("GET", f"/api/labels/{label_id}/", case=case)
            if status == 200:
                self.tally.leaked += 1

    def reads(self, case: str) -> None:
        p, api, page = self.p, self.api, self.page
        api["ann1"].request("GET", "/api/labels/", case=case)
        api["ann1"].request("GET", f"/api/projects/{p}/progress/", case=case)
        api["reviewer"].request("GET", f"/api/projects/{p}/review/queue/", case=case)
        api["admin"].request("GET", f"/api/projects/{p}/final-labels/?limit=200", case=case)
        api["admin"].request("GET", f"/api/projects/{p}/quality/", case=case)
        pages = (
            ("ann1", f"/projects/{p}/annotate/"),
            ("ann1", "/labels/"),
            ("ann1", "/"),
            ("admin", f"/projects/{p}/manage/"),
            ("admin", f"/projects/{p}/quality/"),
            ("reviewer", f"/projects/{p}/review/"),
        )
        for who, path in pages:
            page[who].request("GET", path, case=case)
        self.check_done_review_views(case)

    def check_done_review_views(self, case: str) -> None:
        """Done tasks may be reviewed; their payloads must carry item refs, not response ids;
        open ones must not be shown at all."""
        from annotation.models import Task, TaskItem

        done = list(Task.objects.filter(project_id=self.p, status="done").order_by("-id")[:2])
        open_ = list(Task.objects.filter(project_id=self.p, status="open").order_by("-id")[:1])
        for task in done + open_:
            status, view = self.api["reviewer"].json("GET", f"/api/tasks/{task.pk}/review/",
                                                     case=case)  # fmt: skip
            if task.status == "open":
                if status == 200:
                    self.tally.leaked += 1
                continue
            if status != 200 or not view:
                continue
            raw = set(TaskItem.objects.filter(task=task).values_list("response_id", flat=True))
            if {r["id"] for r in view.get("responses", [])} & raw:
                self.tally.leaked += 1
                print(f"leaked: raw response ids in review of {task.pk} [{case}]", file=sys.stderr)

    # ------------------------------------------------------------ request-shaped cases

    def request_case(self, case: str) -> None:
        p, ann = self.p, self.api["ann1"]
        task = self.claim("ann1", case)
        ref = task["task_id"] if task else 1
        deep = "[" * 100_000 + "]" * 100_000
        if case == "deep_json_label":
            body = f'{{"payload": {{"choice": "A", "x": {deep}}}}}'.encode()
            ann.request("POST", f"/api/tasks/{ref}/labels/", body, case=case)
        elif case == "deep_json_token":
            anonymous = Client(ann.port, self.tally)
            body = f'{{"username": {deep}, "password": "x"}}'.encode()
            anonymous.request("POST", "/api/auth/token/", body, case=case)
        elif case == "huge_int_exclude":
            ann.request("POST", f"/api/projects/{p}/tasks/next/", {"exclude": [TOO_BIG]},
                        case=case)  # fmt: skip
        elif case == "huge_int_path":
            for path in (f"/api/tasks/{TOO_BIG}/", f"/api/projects/{TOO_BIG}/",
                         f"/api/labels/{TOO_BIG}/", f"/tasks/{TOO_BIG}/review/"):  # fmt: skip
                ann.request("GET", path, case=case)
        elif case == "huge_int_offset":
            self.api["reviewer"].request(
                "GET",
                f"/api/projects/{p}/review/queue/?offset={TOO_BIG}&limit=-{TOO_BIG}",
                case=case,
            )
            self.api["admin"].request(
                "GET", f"/api/projects/{p}/final-labels/?after={TOO_BIG}&limit=²", case=case
            )
        elif case == "huge_int_snapshot_seed":
            self.api["admin"].request(
                "POST", f"/api/projects/{p}/snapshots/",
                {"name": "hostile", "config": {"split_seed": TOO_BIG}}, case=case,
            )  # fmt: skip
        elif case == "non_ascii_digit_rubric_key":
            ann.request("POST", f"/api/tasks/{ref}/labels/",
                        {"payload": {"scores": {"²": {"helpfulness": 3}}}}, case=case)  # fmt: skip
            ann.request("POST", f"/api/tasks/{ref}/labels/",
                        {"payload": {"ranking": [["²"], ["\u0661"]]}}, case=case)  # fmt: skip
        elif case == "surrogate_in_label":
            body = b'{"payload": {"choice": "A", "rationale": "\\ud83d"}}'
            ann.request("POST", f"/api/tasks/{ref}/labels/", body, case=case)
        elif case == "oversized_body":
            big = b'{"payload": {"choice": "A", "rationale": "' + b"x" * 12_000_000 + b'"}}'
            ann.request("POST", f"/api/tasks/{ref}/labels/", big, case=case)
        elif case == "foreign_ids":
            w = self.world
            for method, path, body in (
                ("POST", f"/api/projects/{w['foreign_project']}/tasks/next/", {}),
                ("POST", f"/api/tasks/{w['foreign_task']}/labels/", {"payload": {"choice": "A"}}),
                ("GET", f"/api/tasks/{w['foreign_task']}/", None),
                ("GET", f"/api/tasks/{w['foreign_task']}/review/", None),
                ("GET", f"/api/projects/{w['foreign_project']}/final-labels/", None),
            ):
                status, answer = self.api["reviewer"].request(method, path, body, case=case)
                if status < 400 or b"foreign" in answer:
                    self.tally.leaked += 1
        if task:
            self.submit("ann1", task, "plain", case)

    # ------------------------------------------------------------ the end

    def drain(self, deadline: float) -> int:
        """Claim and label (or skip) every open task; the open ones left nobody could take."""
        from annotation.models import Lease, Task

        rounds = 0
        while time.monotonic() < deadline:
            progressed = False
            for who in ("ann1", "ann2", "reviewer"):
                task = self.claim(who, "drain")
                if task:
                    progressed = True
                    self.submit(who, task, "drain", "drain")
            rounds += 1
            if not progressed:
                break
        skipped_by_all = 0
        left = Task.objects.filter(project_id=self.p, status="open")
        for task in left:
            skippers = Lease.objects.filter(task=task, state="skipped").count()
            if skippers >= 3:
                skipped_by_all += 1  # skipped and reported by every annotator: not stuck
        return left.count() - skipped_by_all


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a database is created)")
    name = f"{args.database_url.rsplit('/', 1)[-1] or 'tandem'}_hostile{os.getpid()}"
    run_url = _with_dbname(args.database_url, name)
    os.environ.update({"DATABASE_URL": run_url, "DJANGO_SECRET_KEY": SECRET_KEY,
                       "DJANGO_SETTINGS_MODULE": "config.settings"})  # fmt: skip
    print(f"migrating {name}", file=sys.stderr)
    template_migrate(args.database_url, name)
    proc, result = None, None
    try:
        world = seed()
        cfg = BenchConfig(server="gunicorn", workers=args.workers, threads=args.threads)
        port = _free_port()
        log = Path(tempfile.mkstemp(prefix="hostile-server-", suffix=".log")[1])
        proc = server_start(cfg, run_url, port, log, secret_key=SECRET_KEY)
        tally = Tally()
        attack = Attack(port, world, tally)
        end = time.monotonic() + args.seconds
        rounds = 0
        while time.monotonic() < end:
            for case, text in CORPUS.items():
                if time.monotonic() >= end:
                    break
                attack.text_round(case, text)
            for case in REQUEST_CASES:
                if time.monotonic() >= end:
                    break
                attack.request_case(case)
            rounds += 1
            print(f"round {rounds}: {tally.requests} requests, {tally.server_errors} server "
                  f"errors, slowest {tally.slowest_ms:.0f} ms", file=sys.stderr)  # fmt: skip
        left = attack.drain(time.monotonic() + max(30.0, args.seconds / 2))
        result = {
            "cases": len(CORPUS) + len(REQUEST_CASES),
            "requests": tally.requests,
            "server_errors": tally.server_errors,
            "slowest_ms": round(tally.slowest_ms, 1),
            "stuck_tasks": left + len(tally.stuck),
            "leaked_sides": tally.leaked,
        }
        print(f"rounds {rounds}; slowest: {tally.slowest}; server log {log}", file=sys.stderr)
    finally:
        if proc is not None:
            server_stop(proc)
        from django.db import connections

        connections.close_all()
        if not args.keep_database:
            database_drop(args.database_url, name)
    print(json.dumps(result))
    return result


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
