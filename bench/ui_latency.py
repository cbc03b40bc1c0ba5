"""What a person waits for in the browser: the annotator's next task and the data explorer.

Seeds a project of ``--tasks`` pairwise tasks (1M by default) through COPY (the loader of
``bench/annotation_load.py``), serves it with gunicorn, and drives headless Chromium
(/usr/bin/chromium, --no-sandbox) through:

- the annotator loop: read for ``--think-ms`` (1 s), press "1" then Enter, until the next task
  is on screen (``next_task_ms``: from the Enter key to the new task's id in the DOM); then the
  same with no pause at all (``next_task_ms_p95_no_pause``: answering the instant a task shows,
  so each answer waits for the previous label and the next claim to reach the server);
- the explorer: apply a filter (status, kind, prompt text, agreement, created date in turn)
  until the table is drawn (``explorer_filter_ms``), and page through with "Older →"
  (``explorer_page_ms``).

Timings are taken inside the page (performance.now, a MutationObserver), so Playwright's own
round trips are not counted. Needs PostgreSQL (DATABASE_URL); it creates and drops its own
databases. The last line is JSON: {"next_task_ms_p95", "explorer_filter_ms_p95",
"explorer_page_ms_p95", "think_ms", "next_task_ms_p95_no_pause"}; targets 50, 500, 300.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tandem python bench/ui_latency.py --tasks 20000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.annotation_load import (
    ROOT,
    _dbname,
    _free_port,
    _percentile,
    _with_dbname,
    database_create_from_template,
    database_drop,
    seed_tasks,
    server_stop,
    template_migrate,
)

CHROMIUM = "/usr/bin/chromium"
# A person reads a task before answering it: a pairwise task is two model answers, which the
# fastest annotators in our own timings take seconds over. One second is a fast annotator;
# --think-ms 0 measures answering the instant a task appears (a throughput figure: every answer
# then waits for the label and the next claim to reach the server), printed as well.
THINK_MS = 1000
PASSWORD = "bench-pass-1"
FILTERS = [
    {"status": "open"},
    {"kind": "pairwise"},
    {"q": "question 4242"},
    {"agreement_min": "0.5"},
    {"created_from": "2000-01-01"},
]


def _setup_django(run_url: str) -> None:
    os.environ["DATABASE_URL"] = run_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def seed_people() -> tuple[int, str]:
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.roles import Role

    users = get_user_model()
    lead = users.objects.create_user("bench-lead", password=PASSWORD, is_staff=True)
    annotator = users.objects.create_user("bench-ann", password=PASSWORD)
    project = services.project_create(name="UI latency", created_by=lead, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    return project.pk, lead.username


def server_start(run_url: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": run_url, "DJANGO_DEBUG": "0",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
           "TANDEM_LOG_LEVEL": "ERROR"}  # fmt: skip
    env.pop("TANDEM_ENV", None)  # plain http on 127.0.0.1: no secure-only cookies
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True)  # fmt: skip
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "config.wsgi:application", "--preload", "-b", f"127.0.0.1:{port}", "-w", "2",
         "-k", "gthread", "--threads", "8", "--keep-alive", "75"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    import http.client

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/login/")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.3)
    server_stop(proc)
    raise SystemExit(f"the server did not answer:\n{log.read_text()[-2000:]}")


# In-page probes (page.evaluate runs through DevTools, outside the page's CSP).
ANNOTATE_PROBE = """() => {
  window.__lat = [];
  const box = document.querySelector('[data-testid=task]');
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') window.__t0 = performance.now();
  }, true);
  new MutationObserver(() => {
    if (!window.__t0) return;
    window.__lat.push(performance.now() - window.__t0);
    window.__t0 = 0;
  }).observe(box, { attributes: true, attributeFilter: ['data-task-id'] });
}"""
EXPLORER_PROBE = """() => {
  window.__lat = [];
  const root = document.getElementById('explorer');
  const start = () => { window.__t0 = performance.now(); };
  document.querySelector('[data-testid=explorer-filters]').addEventListener('submit', start, true);
  document.querySelector('[data-testid=next-page]').addEventListener('click', start, true);
  new MutationObserver(() => {
    if (root.dataset.state !== 'ready' || !window.__t0) return;
    window.__lat.push(performance.now() - window.__t0);
    window.__t0 = 0;
  }).observe(root, { attributes: true, attributeFilter: ['data-state'] });
}"""


def drive(base: str, project_id: int, samples: int, think_ms: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        # bypass_csp: only for the probes Playwright evaluates (wait_for_function uses eval).
        page = browser.new_context(base_url=base, bypass_csp=True).new_page()
        page.set_default_timeout(60_000)

        def login(username):
            page.goto("/login/")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/")

        login("bench-ann")
        page.goto(f"/projects/{project_id}/annotate/")
        page.wait_for_selector("[data-testid=task][data-task-id]")
        page.evaluate(ANNOTATE_PROBE)

        def answer(count: int, pause_ms: int) -> list[float]:
            page.evaluate("window.__lat = []")
            for i in range(count):
                if pause_ms:
                    page.wait_for_timeout(pause_ms)  # reading the two answers
                page.keyboard.press("1")
                page.keyboard.press("Enter")
                page.wait_for_function(f"window.__lat.length > {i}")
            return page.evaluate("window.__lat")

        answer(3, think_ms)  # warm-up
        next_task = answer(samples, think_ms)
        no_pause = answer(samples, 0)
        page.context.clear_cookies()

        login("bench-lead")
        page.goto(f"/projects/{project_id}/explorer/")
        page.wait_for_selector("#explorer[data-state=ready]")
        page.evaluate(EXPLORER_PROBE)
        filter_ms, page_ms = [], []
        for i in range(samples):
            page.click("[data-testid=explorer-filters] button[type=reset]")
            page.wait_for_selector("#explorer[data-state=ready]")
            page.evaluate("window.__lat = []")
            for name, value in FILTERS[i % len(FILTERS)].items():
                page.fill(f"[name={name}]", value) if name != "kind" and name != "status" else \
                    page.select_option(f"[name={name}]", value)  # fmt: skip
            page.click("[data-testid=explorer-filters] button[type=submit]")
            page.wait_for_function("window.__lat.length > 0")
            filter_ms.append(page.evaluate("window.__lat[0]"))
        page.click("[data-testid=explorer-filters] button[type=reset]")
        page.wait_for_selector("#explorer[data-state=ready]")
        page.evaluate("window.__lat = []")
        for i in range(samples):
            page.click("[data-testid=next-page]")
            page.wait_for_function(f"window.__lat.length > {i}")
        page_ms = page.evaluate("window.__lat")
        browser.close()
    return {"next_task": next_task, "next_task_no_pause": no_pause, "filter": filter_ms,
            "page": page_ms}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000, help="pairwise tasks seeded")
    parser.add_argument("--samples", type=int, default=40, help="measurements of each kind")
    parser.add_argument(
        "--think-ms",
        type=int,
        default=THINK_MS,
        help="pause before each answer, as a person reads the task (0: answer at once)",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (COPY, pg_trgm)")
    # Named after DATABASE_URL's database, so two people's runs on one server do not collide.
    prefix = _dbname(base_url) or "tandem"
    template, run_db = f"{prefix}_ui_bench_template", f"{prefix}_ui_bench"
    template_migrate(base_url, template)
    database_create_from_template(base_url, run_db, template)
    run_url = _with_dbname(base_url, run_db)
    _setup_django(run_url)
    project_id, _ = seed_people()
    seconds = seed_tasks(run_url, project_id=project_id, tasks=args.tasks, overlap=1)
    print(f"seeded {args.tasks} tasks in {seconds:.1f} s", file=sys.stderr)
    port = _free_port()
    log = Path(ROOT / "var" / "ui_latency_server.log")
    log.parent.mkdir(exist_ok=True)
    proc = server_start(run_url, port, log)
    try:
        figures = drive(f"http://127.0.0.1:{port}", project_id, args.samples, args.think_ms)
    finally:
        server_stop(proc)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            database_drop(base_url, run_db)
        database_drop(base_url, template)
    for name, values in figures.items():
        print(f"{name}: n={len(values)} p50={_percentile(values, 50):.1f} ms "
              f"p95={_percentile(values, 95):.1f} ms max={max(values):.1f} ms")  # fmt: skip
    print(json.dumps({
        "next_task_ms_p95": round(_percentile(figures["next_task"], 95), 1),
        "explorer_filter_ms_p95": round(_percentile(figures["filter"], 95), 1),
        "explorer_page_ms_p95": round(_percentile(figures["page"], 95), 1),
        "think_ms": args.think_ms,
        "next_task_ms_p95_no_pause": round(_percentile(figures["next_task_no_pause"], 95), 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
