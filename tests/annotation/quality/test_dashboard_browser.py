"""The dashboard in headless Chromium: every chart is drawn and the console stays clean."""

import os
import random
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.quality import services as quality
from annotation.quality.models import QualityRefreshState
from annotation.roles import Role

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("TANDEM_CHROMIUM", "/usr/bin/chromium")
CHARTS = ["progress", "agreement", "distribution", "durations", "position"]


@contextmanager
def chromium():
    """Started after the database work: Playwright's sync API runs an event loop in this
    thread, and Django refuses ORM calls from a thread with a running loop."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def dashboard_page(client, user, live_server, project):
    """``user``'s session in Chromium on the project's dashboard; yields (page, problems):
    console errors, page errors and responses of 400 or more."""
    client.force_login(user)
    session = client.cookies["sessionid"].value
    with chromium() as browser:
        context = browser.new_context()
        context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
        page = context.new_page()
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.goto(f"{live_server.url}/projects/{project.pk}/quality/")
        yield page, problems
        # Let the page's requests finish before the database is flushed under them.
        page.wait_for_load_state("networkidle")
        page.goto("about:blank")
        context.close()


def test_dashboard_charts_render_without_console_errors(
    queued_tasks, no_gold_draws, project, admin_user, member, make_task, live_server, client
):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test does)")
    # given a project with pairwise labels from three annotators, one of them always "left"
    project.overlap = 3
    project.save()
    for _ in range(12):
        make_task()
    rng = random.Random(0)
    for name in ("lefty", "ann1", "ann2"):
        user = member(Role.ANNOTATOR, name)
        for _ in range(12):
            lease = services.task_claim_next(project=project, annotator=user)
            choice = "left" if name == "lefty" else rng.choice(["left", "right", "tie"])
            services.label_submit(task=lease.task, annotator=user, payload={"choice": choice},
                                  duration_ms=rng.randint(1_000, 60_000))  # fmt: skip
            quality.quality_mark_dirty(project_id=project.pk, task_ids=[lease.task_id])
    quality.quality_refresh(project_id=project.pk)

    # when an admin opens the dashboard
    with dashboard_page(client, admin_user, live_server, project) as (page, problems):
        page.wait_for_selector("#quality[data-rendered='1']", timeout=15_000)

        # then every chart has a Chart.js instance with data on a sized canvas
        for name in CHARTS:
            drawn = page.evaluate(
                """(id) => {
                    const canvas = document.getElementById(id);
                    const chart = Chart.getChart(canvas);
                    return !!chart && canvas.width > 0 && canvas.height > 0
                        && chart.data.datasets.some((d) => d.data.length > 0);
                }""",
                f"chart-{name}",
            )
            assert drawn, name
        # and the annotator table has a row with an SVG sparkline per annotator
        assert page.locator("#annotator-rows tr").count() == 3
        assert page.locator("#annotator-rows svg.sparkline").count() == 3
        assert "position bias" in page.locator("tr[data-annotator='lefty']").inner_text()
        assert problems == []


def test_the_refresh_button_queues_a_refresh_and_the_page_shows_the_newer_report(
    queued_tasks, no_gold_draws, project, admin_user, member, make_task, live_server, client,
    monkeypatch,
):  # fmt: skip
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test does)")
    # Playwright's loop runs in this thread; the refresh below is plain synchronous ORM work.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    # given a computed report, then a label whose refresh was queued an hour ago and never
    # ran (a lost job: no worker runs here)
    make_task()
    quality.quality_refresh(project_id=project.pk)
    user = member(Role.ANNOTATOR, "ann")
    lease = services.task_claim_next(project=project, annotator=user)
    services.label_submit(task=lease.task, annotator=user, payload={"choice": "left"})
    quality.quality_mark_dirty(project_id=project.pk, task_ids=[lease.task_id])
    QualityRefreshState.objects.update_or_create(
        project=project,
        defaults={"pending": True, "requested_at": timezone.now() - timedelta(hours=1)},
    )

    with dashboard_page(client, admin_user, live_server, project) as (page, problems):
        status = page.locator("[data-testid=refresh-status]")
        # then the page says when the report was computed and that the refresh did not run
        page.wait_for_function(
            "() => document.querySelector('[data-testid=refresh-status]').textContent"
            ".includes('has not run')"
        )
        assert status.inner_text().startswith("Last computed: ")
        # when the admin presses the button, then a refresh is queued and shown as waiting
        page.click("[data-testid=refresh-button]")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=refresh-status]').textContent"
            ".includes('A refresh is waiting for a worker.')"
        )
        assert QualityRefreshState.objects.get(project=project).requested_at > timezone.now() - (
            timedelta(minutes=1)
        )
        # when a worker runs it, then the page reloads the newer report and is up to date
        quality.quality_refresh(project_id=project.pk)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=refresh-status]').textContent"
            ".includes('Up to date.')",
            timeout=15_000,
        )
        assert page.locator("#quality-refresh").get_attribute("data-pending") == "0"
        assert problems == []
