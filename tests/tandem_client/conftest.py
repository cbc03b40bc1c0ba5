"""Fixtures for the Python client: a live server, users with API tokens, tiny models."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from annotation import services as annotation_services
from annotation.roles import Role
from annotation.services.tokens import api_token_create
from tandem_client import Tandem
from tests.models_registry.conftest import tiny_base_dir  # noqa: F401 (a session fixture)
from tests.rlhf.runs.conftest import DB_TASKS, tiny_models  # noqa: F401 (a session fixture)


@pytest.fixture
def server_settings(settings, tmp_path, tiny_models, tiny_base_dir):  # noqa: F811
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_BUNDLE_ROOT = tmp_path / "bundles"
    settings.TANDEM_MODEL_ROOTS = [
        tiny_models["root"],
        tiny_base_dir.parent,
        tmp_path / "artifacts",
    ]
    settings.TANDEM_SNAPSHOT_WORKERS = 0
    settings.TANDEM_RUN_HEARTBEAT_SECONDS = 0.2
    settings.TANDEM_RUN_STALE_SECONDS = 30
    settings.TANDEM_RUN_FLUSH_SECONDS = 0.2
    settings.TANDEM_RUN_POLL_SECONDS = 0
    # Jobs wait in the database queue; the tests play the worker (``as_worker``).
    settings.TASKS = DB_TASKS
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return settings


@pytest.fixture
def people(transactional_db, server_settings):
    users = {
        name: get_user_model().objects.create_user(name, password="pw")
        for name in ("erin-engineer", "ann-annotator", "oscar-outsider")
    }
    project = annotation_services.project_create(
        name="Client", created_by=users["erin-engineer"], overlap=1
    )
    annotation_services.membership_set(
        project=project, user=users["erin-engineer"], role=Role.ADMIN
    )
    annotation_services.membership_set(
        project=project, user=users["ann-annotator"], role=Role.ANNOTATOR
    )
    other = annotation_services.project_create(
        name="Other", created_by=users["oscar-outsider"], overlap=1
    )
    annotation_services.membership_set(project=other, user=users["oscar-outsider"], role=Role.ADMIN)
    return {"project": project, **users}


@pytest.fixture
def connect(live_server):
    """``connect(user, scope)``: a client of the live server with a new token of ``scope``."""
    opened = []

    def make(user, scope="admin") -> Tandem:
        secret = api_token_create(user=user, name=f"client-{scope}", scope=scope).secret
        client = Tandem(live_server.url, token=secret, timeout=120)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def as_worker(function, **kwargs):
    """Run a job's body in a thread, as a worker process would; returns (thread, outcome)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(**kwargs)
        except BaseException as exc:  # surfaced by the test
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome
