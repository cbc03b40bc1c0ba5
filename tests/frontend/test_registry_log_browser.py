"""A reviewer reaches the project's leaderboard and audit log from Home by clicking only, and
filters the audit log, in a real browser (strict CSP), without a console error."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from annotation import services
from annotation.models import Label, Task, TaskKind, TaskStatus
from annotation.roles import Role
from models_registry import services as registry
from models_registry.models import AuditEvent, VersionKind
from rlhf.training.base_models import build_tiny_causal_lm

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def reviewed_project(tmp_path):
    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    reviewer = User.objects.create_user("rev", password="rev-pass-123")
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(name="Arena", created_by=engineer, overlap=1)
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    folder = build_tiny_causal_lm(tmp_path / "lm")
    base = registry.model_version_register_base(
        project=project, registered_by=engineer, folder=folder, name="tiny-base"
    )
    candidate = registry.model_version_register(
        project=project, folder=folder, name="tiny-dpo", kind=VersionKind.POLICY,
        registered_by=engineer, launched_by=engineer, parent=base,
    )  # fmt: skip
    registry.model_version_transition(
        version=candidate, actor=engineer, to_state="in_review", reason="ready for review"
    )
    for n, outcome in enumerate("AAAB"):  # canonical A = the candidate: wins 3 of 4
        task, _ = services.task_create(
            project=project, messages=[{"role": "user", "content": f"Question {n}?"}],
            kind=TaskKind.PAIRWISE,
            responses=[{"text": f"Answer {n} by {v.name}", "origin": "model",
                        "model_name": v.response_model_name} for v in (candidate, base)],
        )  # fmt: skip
        Label.objects.create(
            task=task, annotator=annotator, kind=TaskKind.PAIRWISE,
            payload={"outcome": outcome, "strength": None, "rationale": ""},
        )  # fmt: skip
        Task.objects.filter(pk=task.pk).update(label_count=1, status=TaskStatus.DONE)
    return project, candidate, base


def test_a_reviewer_reaches_the_leaderboard_and_the_audit_log_from_home(
    page, login, reviewed_project
):
    project, candidate, base = reviewed_project
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    login("rev", "rev-pass-123")

    # Home → Leaderboard: the candidate leads, the base holds the champion alias
    page.click(f"[data-testid=leaderboard-{project.slug}]")
    expect(page.locator("h1")).to_have_text("Leaderboard")
    rows = page.locator("[data-testid=leaderboard-table] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-testid", f"leaderboard-row-{candidate.pk}")
    leader = page.locator(f"[data-testid=leaderboard-row-{candidate.pk}]")
    expect(leader.locator("[data-testid=comparisons]")).to_have_text("4")
    expect(leader.locator("[data-testid=record]")).to_have_text("3 · 1 · 0")
    expect(leader.locator("[data-testid=win-rate]")).to_have_text("0.750")
    expect(
        page.locator(f"[data-testid=leaderboard-row-{base.pk}] [data-testid=aliases]")
    ).to_have_text("champion")

    # back Home → Model versions → Audit log
    page.click(".brand")
    page.click(f"[data-testid=models-{project.slug}]")
    page.click("[data-testid=audit-link]")
    expect(page.locator("h1")).to_have_text("Audit log")
    total = AuditEvent.objects.filter(project=project).count()
    expect(page.locator("[data-testid=audit-table] tbody tr")).to_have_count(total)

    # filter to the candidate's state changes
    page.select_option("[data-testid=filter-version]", str(candidate.pk))
    page.select_option("[data-testid=filter-action]", "transition")
    page.click("[data-testid=filter-submit]")
    expect(page.locator("[data-testid=audit-count]")).to_have_text("1 event · page 1 of 1")
    event = AuditEvent.objects.get(version=candidate, action="transition")
    row = page.locator(f"[data-testid=audit-event-{event.pk}]")
    expect(row).to_contain_text("ready for review")
    expect(row).to_contain_text("eng")
    # the filters stay as chosen
    expect(page.locator("[data-testid=filter-version]")).to_have_value(str(candidate.pk))

    assert failed == []
    assert page.watch.console_errors == []
    assert page.watch.page_errors == []
