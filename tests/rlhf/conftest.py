"""Fixtures for snapshot tests: projects with members and imported or built labels."""

import pytest
from django.contrib.auth import get_user_model

from annotation import services as annotation_services
from annotation.importers import import_file
from annotation.roles import Role
from tests.hh_dialogues import hh_jsonl

IMMEDIATE_TASKS = {
    "default": {
        "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
        "QUEUES": ["default", "training", "generation", "snapshots"],
    }
}


@pytest.fixture
def snapshot_settings(settings, tmp_path):
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_SNAPSHOT_WORKERS = 0
    settings.TASKS = IMMEDIATE_TASKS
    return settings


@pytest.fixture
def make_user(transactional_db):
    counter = {"n": 0}

    def make(username=None):
        counter["n"] += 1
        return get_user_model().objects.create_user(
            username or f"user{counter['n']}", password="pw"
        )

    return make


@pytest.fixture
def engineer(make_user):
    return make_user("eve-engineer")


@pytest.fixture
def project(engineer):
    project = annotation_services.project_create(name="Harmless", created_by=engineer, overlap=1)
    annotation_services.membership_set(project=project, user=engineer, role=Role.ENGINEER)
    return project


@pytest.fixture
def hh_project(project, engineer):
    import_file(
        project=project,
        data=hh_jsonl(),
        filename="hh_harmless.jsonl",
        kind="preferences",
        created_by=engineer,
        annotator_name="hh-crowd",
    )
    return project


@pytest.fixture
def small_project(project, engineer):
    """The first 40 HH pairs, imported as labels."""
    import_file(
        project=project,
        data=hh_jsonl(40),
        filename="hh40.jsonl",
        kind="preferences",
        created_by=engineer,
        annotator_name="hh-crowd",
    )
    return project
