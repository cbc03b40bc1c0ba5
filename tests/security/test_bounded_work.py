"""Issue 15, finding 7: bounded work per request. Final labels come a page at a time; a full
quality refresh is queued, never run in the request; a model folder is refused by its size
before a file is hashed, and a refusal names no file of another project's runs; an import
is refused by its size before the upload is read (or, by Content-Length, even parsed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import multipartparser
from django.test import Client

from annotation import importers, services
from annotation.models import ImportBatch, TaskKind
from annotation.opaque import task_id_from_ref
from annotation.quality import tasks as quality_tasks
from annotation.quality.services import refresh as quality_refresh
from annotation.roles import Role
from models_registry import artifacts
from models_registry.models import ModelVersion

User = get_user_model()


@pytest.fixture
def people(db):
    admin = User.objects.create_user("bounded-admin", password="pw")
    annotator = User.objects.create_user("bounded-ann", password="pw")
    project = services.project_create(name="Bounded", created_by=admin, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    return project, admin, annotator


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _labelled_tasks(project, annotator, count: int) -> list[int]:
    for i in range(count):
        services.task_create(
            project=project,
            messages=[{"role": "user", "content": f"question {i}"}],
            kind=TaskKind.PAIRWISE,
            responses=[{"text": f"{i} {side}", "origin": "model", "model_name": "m"}
                       for side in ("a", "b")],
        )  # fmt: skip
    client, done = _client(annotator), []
    for _ in range(count):
        served = client.post(
            f"/api/projects/{project.pk}/tasks/next/", "{}", content_type="application/json"
        ).json()
        task_id = task_id_from_ref(served["task_id"])
        client.post(
            f"/api/tasks/{task_id}/labels/",
            json.dumps({"payload": {"choice": "A", "strength": "clear"}}),
            content_type="application/json",
        )
        done.append(task_id)
    return sorted(done)


def test_final_labels_come_a_page_at_a_time(people):
    # given five labelled tasks
    project, admin, annotator = people
    task_ids = _labelled_tasks(project, annotator, 5)
    client, url = _client(admin), f"/api/projects/{project.pk}/final-labels/"
    # when they are read two at a time, following the cursor
    pages, after = [], 0
    while after is not None:
        page = client.get(url, {"limit": 2, "after": after}).json()
        pages.append([row["task_id"] for row in page["tasks"]])
        after = page["next_after"]
    # then every task comes once, in order, in pages of at most two
    assert pages == [task_ids[0:2], task_ids[2:4], task_ids[4:5]]
    # and a page without a limit is bounded too (the default page), with a cursor
    whole = client.get(url).json()
    assert whole["limit"] == 1000
    assert whole["next_after"] is None
    assert [row["task_id"] for row in whole["tasks"]] == task_ids
    assert client.get(url, {"limit": 10**9}).json()["limit"] == 5000
    assert client.get(url, {"after": "²"}).status_code == 400


def test_a_full_quality_refresh_is_queued_not_run_in_the_request(people, monkeypatch):
    project, admin, annotator = people
    _labelled_tasks(project, annotator, 2)
    queued = []
    monkeypatch.setattr(
        quality_tasks, "quality_recompute_job", SimpleNamespace(enqueue=queued.append)
    )
    monkeypatch.setattr(
        quality_tasks, "quality_refresh_job", SimpleNamespace(enqueue=queued.append)
    )

    def ran(**kwargs):
        raise AssertionError("the refresh ran inside the request")

    monkeypatch.setattr(quality_refresh, "quality_recompute", ran)
    monkeypatch.setattr(quality_refresh, "quality_refresh", ran)
    url = f"/api/projects/{project.pk}/quality/refresh/"

    full = _client(admin).post(f"{url}?full=1")
    assert full.status_code == 200, full.content[:300]
    assert full.json()["queued"] == "recompute"
    plain = _client(admin).post(url)
    assert plain.status_code == 200, plain.content[:300]
    assert plain.json()["queued"] == "refresh"
    assert queued == [project.pk, project.pk]


@pytest.fixture
def roots(settings, tmp_path):
    settings.TANDEM_ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.TANDEM_MODEL_ROOTS = [tmp_path / "models", tmp_path / "artifacts"]
    for root in settings.TANDEM_MODEL_ROOTS:
        root.mkdir()
    return tmp_path


def test_a_huge_model_folder_is_refused_before_any_file_is_hashed(people, roots, settings,
                                                                  monkeypatch):  # fmt: skip
    project, admin, _ = people
    folder = roots / "models" / "huge"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    for i in range(12):
        (folder / f"model-{i:05d}.safetensors").write_bytes(b"\0" * 64)
    hashed = []
    monkeypatch.setattr(artifacts, "sha256_file", lambda path: hashed.append(path) or "0" * 64)
    url = f"/api/projects/{project.pk}/models/base/"
    # more files than the bound: refused by the walk that checks links, before hashing
    settings.TANDEM_MODEL_FOLDER_MAX_FILES = 5
    by_count = _client(admin).post(url, {"folder": str(folder), "name": "huge"},
                                   content_type="application/json")  # fmt: skip
    assert by_count.status_code == 400, by_count.content[:300]
    assert "more than 5 files" in by_count.json()["detail"]
    # more bytes than the bound: refused by the file listing, before hashing
    settings.TANDEM_MODEL_FOLDER_MAX_FILES = 100
    settings.TANDEM_MODEL_FOLDER_MAX_BYTES = 200
    by_size = _client(admin).post(url, {"folder": str(folder), "name": "huge"},
                                  content_type="application/json")  # fmt: skip
    assert by_size.status_code == 400, by_size.content[:300]
    assert "more than 200 bytes" in by_size.json()["detail"]
    assert hashed == []
    assert not ModelVersion.objects.exists()


def test_a_refused_folder_names_no_file_of_another_projects_runs(people, roots):
    # given another project's run folder under the artifact root, holding a link out of it
    project, admin, _ = people
    run_folder = roots / "artifacts" / "runs" / "987654" / "attempt-1"
    run_folder.mkdir(parents=True)
    (run_folder / "secret-weights-of-another-project").symlink_to("/etc/hostname")
    url = f"/api/projects/{project.pk}/models/base/"
    # when an admin registers the artifact root (which holds every project's runs)
    response = _client(admin).post(url, {"folder": str(roots / "artifacts"), "name": "all"},
                                   content_type="application/json")  # fmt: skip
    # then it is refused, naming no file inside those runs
    assert response.status_code == 400, response.content[:300]
    assert "secret-weights" not in response.content.decode()
    assert "987654" not in response.content.decode()
    # and the other project's run folder itself is refused the same way
    response = _client(admin).post(url, {"folder": str(run_folder), "name": "theirs"},
                                   content_type="application/json")  # fmt: skip
    assert response.status_code == 400
    assert "secret-weights" not in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_the_import_form_checks_the_size_before_reading_the_upload(people, settings,
                                                                    monkeypatch):  # fmt: skip
    project, admin, _ = people
    settings.TANDEM_MAX_IMPORT_BYTES = 100
    read = []
    monkeypatch.setattr(importers, "import_file", lambda **kw: read.append(kw))
    upload = SimpleUploadedFile("rows.jsonl", b'{"prompt": "x"}\n' * 50)  # 800 bytes
    response = _client(admin).post(
        f"/projects/{project.pk}/manage/",
        {"action": "import", "kind": "prompts", "file": upload},
        follow=True,
    )
    assert response.status_code == 200
    assert "larger than the import limit of 100 bytes" in response.content.decode()
    assert read == []
    assert not ImportBatch.objects.exists()


def test_an_upload_past_the_limit_is_refused_before_its_body_is_parsed(people, settings,
                                                                        monkeypatch):  # fmt: skip
    project, admin, _ = people
    settings.TANDEM_MAX_IMPORT_BYTES = 100
    parsed = []
    real_parse = multipartparser.MultiPartParser.parse

    def parse(self):
        parsed.append(True)
        return real_parse(self)

    monkeypatch.setattr(multipartparser.MultiPartParser, "parse", parse)
    big = SimpleUploadedFile("rows.jsonl", b'{"prompt": "x"}\n' * 70_000)  # ~1.1 MB
    for url in (f"/projects/{project.pk}/manage/", f"/api/projects/{project.pk}/imports/"):
        response = _client(admin).post(url, {"action": "import", "kind": "prompts", "file": big})
        big.seek(0)
        assert response.status_code in (302, 413), (url, response.status_code)
    assert parsed == []
    assert not ImportBatch.objects.exists()
