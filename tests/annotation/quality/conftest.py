"""Fixtures for quality tests: a backend that runs refresh jobs at once, and label helpers."""

import random

import pytest

from annotation import services
from annotation.roles import Role

IMMEDIATE = "django_tasks.backends.immediate.ImmediateBackend"
DUMMY = "django_tasks.backends.dummy.DummyBackend"


def _tasks_backend(settings, backend):
    # django-tasks rebuilds its backends when the TASKS setting changes.
    settings.TASKS = {"default": {"BACKEND": backend, "QUEUES": ["default"]}}


@pytest.fixture
def immediate_tasks(settings):
    _tasks_backend(settings, IMMEDIATE)


@pytest.fixture
def queued_tasks(settings):
    """Enqueued jobs go nowhere: tests call quality_refresh themselves."""
    _tasks_backend(settings, DUMMY)


@pytest.fixture
def no_gold_draws(project):
    project.options = {"quality": {"gold_rate": 0}}
    project.save(update_fields=["options"])
    return project


@pytest.fixture
def label_as(django_capture_on_commit_callbacks):
    """Claim the next task as ``user`` and label it with ``payload`` (or ``choose(lease)``)."""

    def label(project, user, payload=None, *, choose=None, duration_ms=8_000, flags=None):
        lease = services.task_claim_next(project=project, annotator=user)
        assert lease is not None, f"no task left for {user}"
        body = choose(lease) if choose else payload
        with django_capture_on_commit_callbacks(execute=True):
            return services.label_submit(
                task=lease.task,
                annotator=user,
                payload=body,
                duration_ms=duration_ms,
                flags=flags,
            ).label

    return label


@pytest.fixture
def annotators(member):
    def make(n, prefix="ann"):
        return [member(Role.ANNOTATOR, f"{prefix}{i}") for i in range(n)]

    return make


@pytest.fixture
def rng():
    return random.Random(7)
