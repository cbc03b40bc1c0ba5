"""Headless Chromium (Debian's, never a downloaded one) driven by Playwright."""

import os

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test
# body are still synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while the browser lives, and any later test that calls asyncio.run() or starts its
# own Playwright would fail; closing it after each module keeps other tests unaffected.
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageWatch:
    """What a page did that a test must see: dialogs opened and console errors."""

    def __init__(self):
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    page = context.new_page()
    watch = PageWatch()

    def on_dialog(dialog):
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda msg: watch.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    page.watch = watch
    page.set_default_timeout(15_000)
    yield page
    # Let the page's own requests finish before the database is flushed under them.
    try:
        page.wait_for_load_state("networkidle", timeout=5_000)
        page.goto("about:blank")
    finally:
        context.close()


@pytest.fixture
def login(page):
    def do(username: str, password: str):
        page.goto("/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/")

    return do


@pytest.fixture
def pairwise_project():
    """Three pairwise tasks, claimed highest priority first, for one annotator ("ann")."""
    from annotation import services

    from .annotate_helpers import project_with_annotator

    project, annotator = project_with_annotator("Outbox")
    tasks = []
    for n in range(3):
        task, _ = services.task_create(
            project=project, messages=[{"role": "user", "content": f"Question {n}?"}],
            kind="pairwise", priority=10 - n,
            responses=[{"text": f"Answer {n}{side}", "origin": "model", "model_name": "m"}
                       for side in "ab"],
        )  # fmt: skip
        tasks.append(task)
    return project, annotator, tasks


@pytest.fixture
def candidate_in_review(tmp_path):
    """A policy candidate in review against its base, with three finished blind pairs (the
    candidate wins two), and an engineer ("eng"), a reviewer ("rev") and an annotator ("ann")."""
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Label, Task, TaskKind, TaskStatus
    from annotation.roles import Role
    from models_registry import services as registry
    from models_registry.models import LoopRound, RoundKind, RoundStatus, VersionKind
    from rlhf.training.base_models import build_tiny_causal_lm

    User = get_user_model()
    engineer = User.objects.create_user("eng", password="eng-pass-123")
    reviewer = User.objects.create_user("rev", password="rev-pass-123")
    annotator = User.objects.create_user("ann", password="ann-pass-123")
    project = services.project_create(name="Loop", created_by=engineer, overlap=1)
    project.options = {"review_min_labels": 3}
    project.save()
    services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    services.membership_set(project=project, user=reviewer, role=Role.REVIEWER)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    folder = build_tiny_causal_lm(tmp_path / "lm")
    base = registry.model_version_register_base(
        project=project, registered_by=engineer, folder=folder, name="tiny-base"
    )
    candidate = registry.model_version_register(
        project=project, folder=folder, name="tiny-dpo", kind=VersionKind.POLICY,
        registered_by=engineer, launched_by=engineer, parent=base,
    )  # fmt: skip
    registry.model_version_transition(
        version=candidate, actor=engineer, to_state="in_review", reason="ready"
    )
    task_ids = []
    for n, outcome in enumerate("AAB"):  # canonical A = the candidate: wins 2 of 3
        task, _ = services.task_create(
            project=project,
            messages=[{"role": "user", "content": f"How do I bake loaf {n}?"}],
            kind=TaskKind.PAIRWISE,
            responses=[
                {"text": f"Knead, rest, bake loaf {n} <b>hot</b>", "origin": "model",
                 "model_name": candidate.response_model_name},
                {"text": f"Buy loaf {n}.", "origin": "model",
                 "model_name": base.response_model_name},
            ],
        )  # fmt: skip
        Label.objects.create(
            task=task, annotator=annotator, kind=TaskKind.PAIRWISE,
            payload={"outcome": outcome, "strength": None, "rationale": ""},
        )  # fmt: skip
        # finished (the decision page shows finished pairs only)
        Task.objects.filter(pk=task.pk).update(
            label_count=1, status=TaskStatus.DONE, completed_at=task.created_at
        )
        task_ids.append(task.pk)
    LoopRound.objects.create(
        project=project, kind=RoundKind.REVIEW, version=candidate, opponent=base,
        status=RoundStatus.READY, task_ids=task_ids,
    )  # fmt: skip
    return project, candidate, base, task_ids


def tiny_reward_candidate(*, project, engineer, tmp_path):
    """A tiny reward model registered as a candidate of ``project``, with the held-out
    evidence reward training records: 40 test pairs at 0.7 accuracy, and bias probes over
    three pairs (margins 2, -2, 1)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from models_registry import services as registry
    from models_registry.models import VersionKind
    from rlhf.data.audit import reward_probes
    from rlhf.training.base_models import build_tiny_causal_lm

    lm = build_tiny_causal_lm(tmp_path / "reward-lm")
    folder = tmp_path / "rm"
    AutoModelForSequenceClassification.from_pretrained(lm, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(lm).save_pretrained(folder)
    probes = reward_probes([2.0, 0.0, 1.0], [0.0, 2.0, 0.0], ["a" * 30, "a" * 5, "a" * 9],
                           ["a" * 10, "a" * 20, "a" * 3], ["left", "right", "left"])  # fmt: skip
    return registry.model_version_register(
        project=project, folder=folder, name="tiny-rm", kind=VersionKind.REWARD,
        registered_by=engineer, launched_by=engineer,
        metrics={"train_loss": 0.61,
                 "test": {"accuracy": 0.7, "pairs": 40, "loss": 0.58, "accuracy_ci95": [0.55, 0.82],
                          "bias_probes": probes}},
    )  # fmt: skip
