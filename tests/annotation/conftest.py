"""Fixtures for the annotation tests: people with roles, projects and tasks."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotation import services
from annotation.models import TaskKind
from annotation.roles import Role

User = get_user_model()


@pytest.fixture
def client_for():
    """An API client signed in as ``user``."""

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(username=None, *, is_staff=False):
        counter["n"] += 1
        name = username or f"user{counter['n']}"
        return User.objects.create_user(name, password="pw-" + name, is_staff=is_staff)

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("alice-admin", is_staff=True)


@pytest.fixture
def project(admin_user):
    return services.project_create(name="Helpfulness", created_by=admin_user, overlap=2)


@pytest.fixture
def member(project, make_user):
    def make(role=Role.ANNOTATOR, username=None):
        user = make_user(username)
        services.membership_set(project=project, user=user, role=role)
        return user

    return make


@pytest.fixture
def annotator(member):
    return member(Role.ANNOTATOR, "ann")


@pytest.fixture
def make_task(project):
    counter = {"n": 0}

    def make(kind=TaskKind.PAIRWISE, responses=None, prompt=None, target=None):
        counter["n"] += 1
        n = counter["n"]
        default = {
            TaskKind.PAIRWISE: [f"answer A{n}", f"answer B{n}"],
            TaskKind.RANKING: [f"first {n}", f"second {n}", f"third {n}"],
            TaskKind.RUBRIC: [f"rated {n}"],
            TaskKind.CORRECTION: [f"The capitol of France is Paris {n}."],
        }[kind]
        task, _ = services.task_create(
            project=target or project,
            messages=[{"role": "user", "content": prompt or f"question {n}?"}],
            kind=kind,
            responses=[
                {"text": t, "origin": "model", "model_name": "m"} for t in (responses or default)
            ],
        )
        return task

    return make
