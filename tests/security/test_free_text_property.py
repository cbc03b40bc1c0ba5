"""Issue 15, finding 8: a property test over every free-text field a user can write through
the API, with a hostile corpus (Markdown bombs, lone surrogates, non-ASCII digits, NUL, bidi
controls, huge integers, long texts) and generated text from the character classes that broke
things before. For each value: the write and every read that shows it back (the annotator's
task and labels, the pages, the review view) answer without a 5xx, and each request stays
within a generous number of database queries (work bounded by the request, not the text).
Runs on whichever database the suite runs on: SQLite by default, PostgreSQL with DATABASE_URL.
"""

from __future__ import annotations

import json
import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from annotation import services
from annotation.models import Label, TaskKind
from annotation.opaque import task_id_from_ref
from annotation.roles import Role

User = get_user_model()
TOO_BIG = 2**64 + 1
# Far above what any of these requests needs (a claim is ~10, a page ~20); a request whose
# queries grew with the text (a loop per character, a retry per failure) would pass it.
MAX_QUERIES_PER_REQUEST = 60

HOSTILE_CORPUS = [
    "* " * 1000 + "x",
    "[" * 5000,
    "[" * 60_000,
    "> " * 3000 + "x",
    "*a " * 5000,
    "[a](" * 3000,
    "|" * 3000 + "\n" + "|-" * 1500,
    "`" * 5000,
    "<div>" * 2000,
    "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "\ud83d",
    "x\udfffy",
    "²",
    "١٢٣",
    "\x00",
    "a\x00b",
    "invoice\u202egpj.exe",
    str(TOO_BIG),
    str(-TOO_BIG),
    "word " * 20_000,
    "e" + "\u0301" * 5000,
    "{{ settings.SECRET_KEY }} {% debug %}",
    "",
    " ",
]
# Generated text over the classes that caused 500s: surrogates (Cs), digits of every script
# (Nd, No), control and format characters (Cc, Cf), and letters and symbols of any script.
GENERATED = st.text(
    alphabet=st.characters(categories=("Cs", "Nd", "No", "Cc", "Cf", "Lo", "So", "Ll", "Zs")),
    max_size=200,
)
# Every corpus entry is tried (explicit examples), then this many generated texts.
EXAMPLES = int(os.environ.get("TANDEM_FUZZ_EXAMPLES", "10"))


@pytest.fixture
def scene(db):
    admin = User.objects.create_user("prop-admin", password="pw")
    annotator = User.objects.create_user("prop-ann", password="pw")
    project = services.project_create(name="Property", created_by=admin, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    task, _ = services.task_create(
        project=project,
        messages=[{"role": "user", "content": "question?"}],
        kind=TaskKind.PAIRWISE,
        responses=[{"text": t, "origin": "model", "model_name": "m"} for t in ("one", "two")],
    )
    ann = Client()
    ann.force_login(annotator)
    served = ann.post(f"/api/projects/{project.pk}/tasks/next/", "{}",
                      content_type="application/json").json()  # fmt: skip
    assert task_id_from_ref(served["task_id"]) == task.pk
    labelled = ann.post(
        f"/api/tasks/{task.pk}/labels/",
        json.dumps({"payload": {"choice": "A", "strength": "clear"}}),
        content_type="application/json",
    )
    assert labelled.status_code == 201
    adm = Client()
    adm.force_login(admin)
    return {
        "project": project,
        "task": task,
        "label": Label.objects.get(task=task),
        "ann": ann,
        "admin": adm,
    }


def _call(client, method, url, body=None, *, content_type="application/json"):
    with CaptureQueriesContext(connection) as queries:
        if body is None:
            response = getattr(client, method)(url)
        elif content_type == "application/json":
            response = getattr(client, method)(url, json.dumps(body), content_type=content_type)
        else:
            response = getattr(client, method)(url, body)
    assert response.status_code < 500, (method, url, response.status_code)
    assert len(queries) <= MAX_QUERIES_PER_REQUEST, (method, url, len(queries))
    return response


def _import(scene, text: str, as_what: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    row = {"prompt": f"q {text}", "responses": [text, "plain"]}
    if as_what == "prompt":
        row = {"prompt": text, "responses": ["plain a", "plain b"]}
    upload = SimpleUploadedFile("rows.jsonl", json.dumps(row).encode())
    _call(scene["admin"], "post", f"/api/projects/{scene['project'].pk}/imports/",
          {"file": upload, "kind": "responses"}, content_type="multipart")  # fmt: skip
    served = _call(scene["ann"], "post", f"/api/projects/{scene['project'].pk}/tasks/next/", {})
    if served.status_code == 200:
        ref = served.json()["task_id"]
        _call(scene["ann"], "get", f"/api/tasks/{ref}/")
        _call(scene["ann"], "post", f"/api/tasks/{ref}/skip/", {"reason": text[:500]})
    _call(scene["ann"], "get", f"/projects/{scene['project'].pk}/annotate/")


def _rationale(scene, text: str):
    label = scene["label"]
    _call(scene["ann"], "patch", f"/api/labels/{label.pk}/",
          {"payload": {"choice": "B", "strength": "clear", "rationale": text}})  # fmt: skip
    _call(scene["ann"], "get", "/api/labels/")
    _call(scene["ann"], "get", f"/api/labels/{label.pk}/revisions/")
    _call(scene["ann"], "get", "/labels/")
    _call(scene["ann"], "get", f"/labels/{label.pk}/")


def _adjudication_reason(scene, text: str):
    task = scene["task"]
    _call(scene["admin"], "post", f"/api/tasks/{task.pk}/review/",
          {"payload": {"choice": "A"}, "reason": text})  # fmt: skip
    _call(scene["admin"], "get", f"/api/tasks/{task.pk}/review/")
    _call(scene["admin"], "get", f"/tasks/{task.pk}/review/")


def _project_text(scene, text: str):
    project = scene["project"]
    for field in ("name", "guidelines"):
        _call(scene["admin"], "patch", f"/api/projects/{project.pk}/", {field: text})
    _call(scene["admin"], "get", "/")
    _call(scene["admin"], "get", f"/projects/{project.pk}/manage/")
    _call(scene["ann"], "get", f"/projects/{project.pk}/annotate/")


def _names(scene, text: str):
    project = scene["project"]
    _call(scene["admin"], "post", "/api/tokens/", {"name": text, "scope": "read"})
    _call(scene["admin"], "get", "/account/")
    _call(scene["admin"], "post", f"/api/projects/{project.pk}/members/",
          {"username": text, "role": "annotator"})  # fmt: skip
    _call(scene["admin"], "get", f"/projects/{project.pk}/manage/")
    _call(scene["admin"], "post", f"/api/projects/{project.pk}/snapshots/", {"name": text})


def _seal_reason(scene, text: str):
    # The first reason the API accepts seals the prompt (the audit event keeps it); later
    # ones are 409 already_sealed. The task's story, the explorer page and export read it back.
    project, task = scene["project"], scene["task"]
    explorer = f"/api/projects/{project.pk}/explorer"
    _call(scene["admin"], "post", f"{explorer}/tasks/{task.pk}/seal/",
          {"text": "prompt", "reason": text})  # fmt: skip
    _call(scene["admin"], "get", f"{explorer}/tasks/{task.pk}/")
    _call(scene["admin"], "get", f"{explorer}/export/")
    _call(scene["admin"], "get", f"/projects/{project.pk}/explorer/")


FIELDS = {
    "response_text": lambda scene, text: _import(scene, text, "response"),
    "prompt_text": lambda scene, text: _import(scene, text, "prompt"),
    "label_rationale": _rationale,
    "adjudication_reason": _adjudication_reason,
    "project_name_and_guidelines": _project_text,
    "token_member_and_snapshot_names": _names,
    "seal_reason": _seal_reason,
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_no_free_text_field_answers_a_server_error_or_unbounded_work(scene, field):
    write_and_read = FIELDS[field]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(text=GENERATED)
    def check(text):
        write_and_read(scene, text)

    for text in HOSTILE_CORPUS:
        check = example(text=text)(check)
    check()
