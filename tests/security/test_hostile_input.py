"""Hostile text and hostile input: each request here was a 500 (or a task that broke every
annotator who drew it) and must be a clear 400 naming the field, with nothing changed."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation import importers, services
from annotation.models import ImportBatch, Label, Lease, TaskKind
from annotation.opaque import task_id_from_ref
from annotation.roles import Role
from config.errors import ValidationFailed
from tests.security.world import changed_tables, db_checksum

User = get_user_model()
TOO_BIG = 2**64 + 1  # past SQLite's INTEGER (OverflowError) and PostgreSQL's bigint


@pytest.fixture
def people(db):
    admin = User.objects.create_user("hostile-admin", password="pw", is_staff=True)
    annotator = User.objects.create_user("hostile-ann", password="pw")
    project = services.project_create(name="Hostile", created_by=admin, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    return project, admin, annotator


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _task(project, kind=TaskKind.PAIRWISE, responses=("answer A", "answer B")):
    task, _ = services.task_create(
        project=project,
        messages=[{"role": "user", "content": "question?"}],
        kind=kind,
        responses=[{"text": t, "origin": "model", "model_name": "m"} for t in responses],
    )
    return task


def _post_json(client, url, raw: str, method="post"):
    return getattr(client, method)(url, raw, content_type="application/json")


# ---------------------------------------------------------------- finding 5: hostile Markdown


def test_a_task_with_deeply_nested_markdown_is_served_as_plain_text(people):
    # given a task whose answer crashed the Markdown renderer (RecursionError, a 500 after
    # the lease was committed, so the same task came back on every retry)
    project, _, annotator = people
    _task(project, responses=("* " * 1000 + "x", "fine"))
    # when the annotator asks for a task
    response = _post_json(_client(annotator), f"/api/projects/{project.pk}/tasks/next/", "{}")
    # then it is served, the hostile answer shown as escaped plain text
    assert response.status_code == 200, response.content[:300]
    htmls = [r["html"] for r in response.json()["responses"]]
    assert any(h.startswith("<p>* * * ") for h in htmls)


def test_a_task_that_cannot_be_shown_is_skipped_and_the_next_one_served(people, monkeypatch):
    # given two tasks, the first of which cannot be shown (whatever the reason)
    from annotation import selectors

    project, _, annotator = people
    broken, fine = _task(project), _task(project, responses=("other A", "other B"))
    real = selectors.task_view_for_annotator

    def view(lease):
        if lease.task_id == broken.pk:
            raise RuntimeError("cannot render")
        return real(lease)

    monkeypatch.setattr(selectors, "task_view_for_annotator", view)
    # when the annotator asks for a task
    response = _post_json(_client(annotator), f"/api/projects/{project.pk}/tasks/next/", "{}")
    # then the other task is served and the broken one is skipped (not held, not re-served)
    assert response.status_code == 200
    assert task_id_from_ref(response.json()["task_id"]) == fine.pk  # annotators see refs
    lease = Lease.objects.get(task=broken, annotator=annotator)
    assert lease.state == "skipped"
    assert "could not be shown" in lease.skip_reason


# ---------------------------------------------------------------- finding 6: no 500 on any input

LONE_SURROGATE = '"\\ud83d"'  # a JSON string escape Python decodes and no database stores


def test_a_lone_surrogate_in_a_label_payload_is_a_400_naming_the_field(people):
    project, _, annotator = people
    task = _task(project)
    client = _client(annotator)
    _post_json(client, f"/api/projects/{project.pk}/tasks/next/", "{}")
    before = db_checksum()
    raw = f'{{"payload": {{"choice": "A", "note": {LONE_SURROGATE}}}}}'
    response = _post_json(client, f"/api/tasks/{task.pk}/labels/", raw)
    assert response.status_code == 400
    assert response.json()["field"] == "payload.note"
    assert "surrogate" in response.json()["detail"]
    assert changed_tables(before, db_checksum()) == []
    assert not Label.objects.exists()


def test_a_nul_character_in_a_label_payload_is_a_400_naming_the_field(people):
    # PostgreSQL's jsonb refuses \u0000; it must be refused before it reaches the database
    project, _, annotator = people
    task = _task(project)
    client = _client(annotator)
    _post_json(client, f"/api/projects/{project.pk}/tasks/next/", "{}")
    raw = '{"payload": {"choice": "A", "rationale": "a\\u0000b"}}'
    response = _post_json(client, f"/api/tasks/{task.pk}/labels/", raw)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == "payload.rationale"
    assert "NUL" in response.json()["detail"]
    assert not Label.objects.exists()


def test_a_lone_surrogate_in_a_key_a_gold_payload_or_metrics_is_a_400(people):
    project, admin, _ = people
    task = _task(project)
    client = _client(admin)
    before = db_checksum()
    for url, raw, field in [
        (f"/api/tasks/{task.pk}/gold/", f'{{"payload": {{"choice": {LONE_SURROGATE}}}}}',
         "payload.choice"),
        (f"/api/tasks/{task.pk}/gold/", '{"payload": {"\\udc00": "A"}}', "payload"),
        (f"/api/projects/{project.pk}/models/register/",
         f'{{"name": "x", "kind": "policy", "metrics": {{"m": [{LONE_SURROGATE}]}}}}',
         "metrics.m[0]"),
        ("/api/auth/token/", f'{{"username": {LONE_SURROGATE}, "password": "x"}}', "username"),
    ]:  # fmt: skip
        response = _post_json(client, url, raw)
        assert response.status_code == 400, (url, response.content[:300])
        assert response.json()["field"] == field, url
    assert changed_tables(before, db_checksum()) == []


def test_json_nested_100k_deep_is_a_400_even_anonymously():
    raw = "[" * 100_000 + "]" * 100_000
    response = _post_json(Client(), "/api/auth/token/", raw)
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def test_a_lone_surrogate_in_an_imported_jsonl_row_is_refused_with_its_line(people):
    project, admin, _ = people
    data = (
        b'{"prompt": "fine", "responses": ["ok"]}\n{"prompt": "bad \\ud83d", "responses": ["ok"]}\n'
    )
    before = db_checksum()
    with pytest.raises(ValidationFailed) as caught:
        importers.import_file(
            project=project, data=data, filename="x.jsonl", kind="prompts", created_by=admin
        )
    assert "surrogate" in str(caught.value.extra["errors"])
    assert caught.value.extra["errors"][0]["line"] == 2
    assert changed_tables(before, db_checksum()) == []
    assert not ImportBatch.objects.exists()


def test_non_ascii_digits_as_rubric_keys_are_a_400_not_a_500(people):
    project, _, annotator = people
    task = _task(project, kind=TaskKind.RUBRIC, responses=("rated",))
    client = _client(annotator)
    _post_json(client, f"/api/projects/{project.pk}/tasks/next/", "{}")
    before = db_checksum()
    raw = json.dumps({"payload": {"scores": {"²": {"helpful": 3}}}})
    response = _post_json(client, f"/api/tasks/{task.pk}/labels/", raw)
    assert response.status_code == 400, response.content[:300]
    assert changed_tables(before, db_checksum()) == []


def test_non_ascii_digits_in_a_ranking_decision_form_are_refused(people):
    project, admin, annotator = people
    task = _task(project, kind=TaskKind.RANKING, responses=("one", "two", "three"))
    # a done task: an open one is sealed to reviewers before its form is read
    served = _post_json(_client(annotator), f"/api/projects/{project.pk}/tasks/next/", "{}")
    ranking = [[r["id"]] for r in served.json()["responses"]]
    labelled = _post_json(
        _client(annotator),
        f"/api/tasks/{task.pk}/labels/",
        json.dumps({"payload": {"ranking": ranking}}),
    )
    assert labelled.status_code == 201, labelled.content[:300]
    client = _client(admin)
    before = db_checksum()
    response = client.post(f"/tasks/{task.pk}/review/", {"ranking": "² 1", "reason": "r"})
    assert response.status_code == 302, response.status_code
    assert changed_tables(before, db_checksum()) == []


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("get", "/api/projects/{big}/", None, "project_id"),
        ("get", "/api/tasks/{big}/", None, "task_id"),
        ("post", "/api/projects/{project}/tasks/next/", '{{"exclude": [{big}]}}', "exclude[0]"),
        ("post", "/api/projects/{project}/tasks/next/", '{{"exclude": ["{big}"]}}',
         "exclude"),
        ("get", "/api/projects/{project}/review/queue/?offset={big}", None, "offset"),
        ("get", "/api/labels/?project={big}", None, "project"),
    ],
)  # fmt: skip
def test_integers_past_64_bits_are_a_400_naming_the_field(people, method, url, body, field):
    project, admin, _ = people
    url = url.format(big=TOO_BIG, project=project.pk)
    body = body.format(big=TOO_BIG) if body else None
    client = _client(admin)  # logging in writes auth_user.last_login: before the checksum
    before = db_checksum()
    if body is None:
        response = getattr(client, method)(url)
    else:
        response = _post_json(client, url, body, method)
    assert response.status_code == 400, response.content[:300]
    assert field in (response.json().get("field"), *response.json()), response.json()
    assert changed_tables(before, db_checksum()) == []


def test_a_seed_past_64_bits_in_the_snapshot_form_is_refused(people):
    project, admin, _ = people
    client = _client(admin)
    before = db_checksum()
    response = client.post(
        f"/data/projects/{project.pk}/snapshots/", {"name": "s", "seed": str(TOO_BIG)}
    )
    assert response.status_code == 302
    assert changed_tables(before, db_checksum()) == []


def _multipart(name: str, value: str) -> str:
    return f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n--b--\r\n'


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('[{"name": "\\ud83d", "min": 1, "max": 5}]', "surrogate"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
        (f'[{{"name": "x", "min": 1, "max": 5, "note": {TOO_BIG}}}]', "64-bit"),
    ],
)
def test_json_inside_a_form_field_gets_the_same_checks(people, value, words):
    # given JSON sent as a form field (DRF's JSONField decodes it, not the JSON parser)
    project, admin, _ = people
    client = _client(admin)
    before = db_checksum()
    response = client.patch(
        f"/api/projects/{project.pk}/",
        _multipart("rubric", value),
        content_type="multipart/form-data; boundary=b",
    )
    assert response.status_code == 400, response.content[:300]
    assert words in json.dumps(response.json()), response.json()
    assert changed_tables(before, db_checksum()) == []


def test_a_lone_surrogate_in_a_form_post_cannot_reach_the_database(people):
    # Form bodies are decoded as UTF-8 with replacement: an encoded surrogate becomes U+FFFD.
    project, admin, _ = people
    client = _client(admin)
    response = client.post(
        f"/data/projects/{project.pk}/snapshots/",
        "name=a%ED%A0%BDb&seed=1",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 302
    from rlhf.models import DatasetSnapshot

    assert DatasetSnapshot.objects.get().name == "a\ufffd\ufffd\ufffdb"


@pytest.mark.parametrize(
    "form",
    [
        {"action": "settings", "name": "x", "overlap": str(TOO_BIG)},
        {"action": "settings", "name": "x", "lease_seconds": str(TOO_BIG)},
        {"action": "settings", "name": "x", "overlap": "²"},
        {"action": "review", "review_min_labels": str(TOO_BIG)},
        {"action": "review", "review_fresh_prompts": str(TOO_BIG)},
        {"action": "review", "annotation_round_prompts": "²"},
    ],
)
def test_hostile_numbers_in_the_manage_forms_are_refused(people, form):
    project, admin, _ = people
    client = _client(admin)
    before = db_checksum()
    response = client.post(f"/projects/{project.pk}/manage/", form)
    assert response.status_code == 302
    assert changed_tables(before, db_checksum()) == []
