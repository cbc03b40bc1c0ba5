"""Sealing a flagged personal-data text (issue 15, finding 12): a project admin takes a prompt
or response out of the clear; every reader sees the placeholder, the database holds the text
only encrypted, a re-import does not bring it back, and the keys rotate over it.

Every test here failed on the code before sealing existed (no route, no ``sealed_text``
column, no ``text_sealed`` audit action)."""

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from annotation import services
from annotation.audit import DataAuditEvent
from annotation.importers import import_file
from annotation.models import (
    SEALED_PLACEHOLDER,
    Label,
    Lease,
    LeaseState,
    Prompt,
    Response,
    Task,
    TaskKind,
    TaskStatus,
)
from annotation.roles import Role
from annotation.services.hashing import prompt_messages_hash, sealed_content_hash, text_hash
from config.fieldcrypt import PREFIX

pytestmark = pytest.mark.django_db

SECRET = "Call Jane Roe on +44 7700 900123"
QUESTION = "Who can I call about my landlord?"


def seal_url(task):
    return reverse("api-explorer-task-seal", args=[task.project_id, task.pk])


def task_url(task):
    return reverse("api-explorer-task", args=[task.project_id, task.pk])


def raw(sql, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return [v if isinstance(v, str) else json.dumps(v) for v in row]


@pytest.fixture
def admin(project, member):
    return member(Role.ADMIN, "ada-admin")


@pytest.fixture
def secret_task(project):
    task, _ = services.task_create(
        project=project, kind=TaskKind.PAIRWISE, messages=[{"role": "user", "content": QUESTION}],
        responses=[{"text": SECRET, "origin": "model", "model_name": "m"},
                   {"text": "Ask your council.", "origin": "model", "model_name": "m"}],
    )  # fmt: skip
    return task


def secret_response(task):
    return task.items.get(position=0).response


def shown_id(client, task, text):
    """The response's id as the explorer's task view names it (its item's ref)."""
    view = client.get(task_url(task)).json()
    return next(r["id"] for r in view["responses"] if r["text"] == text)


def test_sealing_a_response_replaces_it_for_every_reader_and_stores_it_encrypted(
    client_for, admin, annotator, project, secret_task
):
    # given an annotator who labelled the task
    lease = services.task_claim_next(project=project, annotator=annotator)
    assert lease.task_id == secret_task.pk
    services.label_submit(task=secret_task, annotator=annotator, payload={"choice": "A"})
    api = client_for(admin)

    # when the project admin seals the response
    answer = api.post(
        seal_url(secret_task),
        {"text": "response", "response": shown_id(api, secret_task, SECRET),
         "reason": "a phone number"},
        format="json",
    )  # fmt: skip
    assert answer.status_code == 200, answer.content
    assert answer.json()["tasks_closed"] == 1

    # then the annotator's task view, the explorer and its search show the placeholder only
    mine = client_for(annotator).get(reverse("api-task", args=[secret_task.pk]))
    assert mine.status_code == 200
    assert SECRET not in mine.content.decode()
    assert SEALED_PLACEHOLDER in [r["text"] for r in mine.json()["responses"]]
    explorer = api.get(task_url(secret_task)).json()
    assert [r["text"] for r in explorer["responses"]] == [SEALED_PLACEHOLDER, "Ask your council."]
    assert [r["sealed"] for r in explorer["responses"]] == [True, False]
    assert SECRET not in json.dumps(explorer)
    # and the database column holds no clear text, only the encrypted copy
    response = secret_response(secret_task)
    text, sealed, content_hash = raw(
        "SELECT text, sealed_text, content_hash FROM annotation_response WHERE id = %s",
        response.pk,
    )
    assert text == SEALED_PLACEHOLDER
    assert sealed.startswith(PREFIX)
    assert SECRET not in sealed
    assert Response.objects.get(pk=response.pk).sealed_text == SECRET
    # the plain sha256 of the text (which a guess would confirm) is gone: a keyed hash instead
    assert content_hash == sealed_content_hash(text_hash(SECRET)) != text_hash(SECRET)
    # the open task is closed, its label kept
    secret_task.refresh_from_db()
    assert secret_task.status == TaskStatus.DONE
    assert Label.objects.filter(task=secret_task).count() == 1


def test_sealing_a_prompt_closes_its_open_tasks_and_releases_their_leases(
    client_for, admin, annotator, project, secret_task
):
    lease = services.task_claim_next(project=project, annotator=annotator)
    assert lease.state == LeaseState.ACTIVE

    answer = client_for(admin).post(
        seal_url(secret_task), {"text": "prompt", "reason": "names a person"}, format="json"
    )

    assert answer.status_code == 200, answer.content
    messages, sealed = raw(
        "SELECT messages, sealed_text FROM annotation_prompt WHERE id = %s", secret_task.prompt_id
    )
    assert QUESTION not in messages
    assert QUESTION not in sealed
    prompt = Prompt.objects.get(pk=secret_task.prompt_id)
    assert prompt.messages == [{"role": "user", "content": SEALED_PLACEHOLDER}]
    assert json.loads(prompt.sealed_text) == [{"role": "user", "content": QUESTION}]
    assert Task.objects.get(pk=secret_task.pk).status == TaskStatus.DONE
    assert Lease.objects.get(pk=lease.pk).state == LeaseState.RELEASED
    # the explorer's text search no longer finds it
    page = client_for(admin).get(
        reverse("api-explorer-tasks", args=[project.pk]), {"q": "landlord"}
    )
    assert page.json()["rows"] == []
    # sealing it again is refused
    again = client_for(admin).post(
        seal_url(secret_task), {"text": "prompt", "reason": "twice"}, format="json"
    )
    assert (again.status_code, again.json()["error"]) == (409, "already_sealed")


def test_a_correction_label_of_a_sealed_response_keeps_only_its_judgement_in_clear(
    client_for, admin, annotator, project, make_task
):
    task = make_task(TaskKind.CORRECTION, responses=[SECRET])
    services.task_claim_next(project=project, annotator=annotator)
    label = services.label_submit(
        task=task, annotator=annotator, payload={"corrected_text": SECRET + " (mobile)"}
    ).label
    assert SECRET in raw("SELECT payload FROM annotation_label WHERE id = %s", label.pk)[0]
    api = client_for(admin)

    answer = api.post(
        seal_url(task),
        {"text": "response", "response": shown_id(api, task, SECRET), "reason": "phone"},
        format="json",
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["correction_payloads_sealed"] == 1
    stored = raw("SELECT payload FROM annotation_label WHERE id = %s", label.pk)[0]
    assert SECRET not in stored
    payload = Label.objects.get(pk=label.pk).payload
    assert payload["original_text"] == payload["corrected_text"] == SEALED_PLACEHOLDER
    assert payload["diff"] == ""
    assert payload["edit_distance"] > 0
    assert SECRET not in json.dumps(api.get(task_url(task)).json())


def test_a_reimport_of_a_sealed_text_is_deduplicated_and_stays_sealed(
    client_for, admin, project, secret_task
):
    api = client_for(admin)
    for body in ({"text": "prompt", "reason": "names"},
                 {"text": "response", "response": shown_id(api, secret_task, SECRET),
                  "reason": "phone"}):  # fmt: skip
        assert api.post(seal_url(secret_task), body, format="json").status_code == 200
    row = {
        "prompt": QUESTION,
        "responses": [{"text": SECRET, "model": "m"}, {"text": "Ask your council.", "model": "m"}],
    }

    # when the same file comes in again, and the same task through the service
    batch = import_file(project=project, data=json.dumps(row).encode(), filename="again.jsonl",
                        kind="responses", created_by=admin)  # fmt: skip
    again, created = services.task_create(
        project=project, kind=TaskKind.PAIRWISE, messages=[{"role": "user", "content": QUESTION}],
        responses=[{"text": SECRET, "origin": "model", "model_name": "m"},
                   {"text": "Ask your council.", "origin": "model", "model_name": "m"}],
    )  # fmt: skip

    # then nothing new was written and no row holds the text in clear
    assert batch.counts["prompts_created"] == 0
    assert batch.counts["responses_created"] == 0
    assert batch.counts["tasks_created"] == 0
    assert (again.pk, created) == (secret_task.pk, False)
    assert (Prompt.objects.count(), Response.objects.count(), Task.objects.count()) == (1, 2, 1)
    assert not Response.objects.filter(text=SECRET).exists()
    assert not Prompt.objects.filter(messages__0__content=QUESTION).exists()
    assert Prompt.objects.get().content_hash == sealed_content_hash(
        prompt_messages_hash([{"role": "user", "content": QUESTION}])
    )


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ENGINEER])
def test_only_a_project_admin_can_seal(client_for, member, project, secret_task, role):
    caller = member(role, f"someone-{role}")
    # a body that would be refused is never judged for them: the gate answers first
    for body in ({"text": "prompt", "reason": "x"}, {}):
        answer = client_for(caller).post(seal_url(secret_task), body, format="json")
        assert answer.status_code == 403
    assert Prompt.objects.get(pk=secret_task.prompt_id).sealed_at is None
    assert not DataAuditEvent.objects.filter(action="text_sealed").exists()


def test_an_admin_of_another_project_gets_404_and_changes_nothing(
    client_for, make_user, admin_user, secret_task
):
    other_admin = make_user("bob-admin")
    other = services.project_create(name="Other", created_by=admin_user)
    services.membership_set(project=other, user=other_admin, role=Role.ADMIN)
    api = client_for(other_admin)
    # neither through their own project's route nor through this one's
    foreign = reverse("api-explorer-task-seal", args=[other.pk, secret_task.pk])
    assert api.post(foreign, {"text": "prompt", "reason": "x"}, format="json").status_code == 404
    own_route = api.post(seal_url(secret_task), {"text": "prompt", "reason": "x"}, format="json")
    assert own_route.status_code == 404
    assert Prompt.objects.get(pk=secret_task.prompt_id).messages[0]["content"] == QUESTION


def test_bad_bodies_name_their_field(client_for, admin, secret_task):
    api = client_for(admin)
    cases = [
        ({"text": "prompt", "reason": "  "}, "reason"),
        ({"text": "prompt"}, "reason"),
        ({"text": "title", "reason": "x"}, "text"),
        ({"text": "response", "reason": "x"}, "response"),
        ({"text": "response", "response": 999_999_999, "reason": "x"}, "response"),
    ]
    for body, field in cases:
        answer = api.post(seal_url(secret_task), body, format="json")
        assert answer.status_code == 400, body
        assert field in answer.content.decode(), (body, answer.content)
    assert Prompt.objects.get(pk=secret_task.prompt_id).sealed_at is None


def test_the_seal_is_audited(client_for, admin, project, secret_task):
    client_for(admin).post(
        seal_url(secret_task), {"text": "prompt", "reason": "names a person"}, format="json"
    )
    event = DataAuditEvent.objects.get(action="text_sealed")
    assert (event.actor, event.project, event.subject) == (
        admin,
        project,
        f"prompt:{secret_task.prompt_id}",
    )
    assert event.details["reason"] == "names a person"
    assert (event.details["tasks"], event.details["tasks_closed"]) == (1, 1)
    assert event.details["withdrawn_snapshots"] == []
    assert event.details["model_versions"] == []


def test_rotate_field_keys_reencrypts_sealed_texts_and_rekeys_their_hashes(
    client_for, admin, secret_task, settings
):
    api = client_for(admin)
    api.post(
        seal_url(secret_task),
        {"text": "response", "response": shown_id(api, secret_task, SECRET), "reason": "phone"},
        format="json",
    )
    response = secret_response(secret_task)
    old = settings.TANDEM_FIELD_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.TANDEM_FIELD_KEYS = [new, old]

    out = StringIO()
    call_command("rotate_field_keys", stdout=out)

    counts = json.loads(out.getvalue())
    assert (counts["annotation.Response"], counts["annotation.Task"]) == (1, 1)
    sealed, stored_hash = raw(
        "SELECT sealed_text, content_hash FROM annotation_response WHERE id = %s", response.pk
    )
    assert Fernet(new).decrypt(sealed[len(PREFIX) :].encode()).decode() == SECRET
    settings.TANDEM_FIELD_KEYS = [new]
    assert stored_hash == sealed_content_hash(text_hash(SECRET))
    assert Task.objects.get(pk=secret_task.pk).content_hash == sealed_content_hash(
        services.task_content_hash(
            TaskKind.PAIRWISE,
            prompt_messages_hash([{"role": "user", "content": QUESTION}]),
            [text_hash(SECRET), text_hash("Ask your council.")],
        )
    )
    # and a re-import after the old key is gone still finds the sealed response
    _, created = services.task_create(
        project=secret_task.project, kind=TaskKind.PAIRWISE,
        messages=[{"role": "user", "content": QUESTION}],
        responses=[{"text": SECRET, "origin": "model", "model_name": "m"},
                   {"text": "Ask your council.", "origin": "model", "model_name": "m"}],
    )  # fmt: skip
    assert created is False


def unseal_url(task):
    return reverse("api-explorer-task-unseal", args=[task.project_id, task.pk])


def test_unsealing_restores_the_clear_text_its_hashes_and_correction_payloads(
    client_for, admin, annotator, project, make_task
):
    # given a sealed response with a correction label, and a task showing a sealed prompt
    task = make_task(TaskKind.CORRECTION, responses=[SECRET])
    services.task_claim_next(project=project, annotator=annotator)
    label = services.label_submit(
        task=task, annotator=annotator, payload={"corrected_text": SECRET + " (mobile)"}
    ).label
    before = Label.objects.get(pk=label.pk).payload
    plain_task_hash = Task.objects.get(pk=task.pk).content_hash
    api = client_for(admin)
    ref = shown_id(api, task, SECRET)
    body = {"text": "response", "response": ref, "reason": "phone"}
    assert api.post(seal_url(task), body, format="json").status_code == 200
    assert Task.objects.get(pk=task.pk).content_hash != plain_task_hash

    # when the admin unseals it
    answer = api.post(unseal_url(task), {**body, "reason": "wrong text"}, format="json")

    # then the text, its plain hashes and the correction payload are back, and it is audited
    assert answer.status_code == 200, answer.content
    assert answer.json()["correction_payloads_restored"] == 1
    response = secret_response(task)
    assert (response.text, response.sealed_text, response.sealed_at) == (SECRET, "", None)
    assert response.content_hash == text_hash(SECRET)
    assert Task.objects.get(pk=task.pk).content_hash == plain_task_hash
    assert Label.objects.get(pk=label.pk).payload == before
    event = DataAuditEvent.objects.get(action="text_unsealed")
    assert (event.actor, event.subject, event.details["reason"]) == (
        admin,
        f"response:{response.pk}",
        "wrong text",
    )
    # the task the seal closed stays closed; a second unseal is refused
    assert Task.objects.get(pk=task.pk).status == TaskStatus.DONE
    again = api.post(unseal_url(task), body, format="json")
    assert (again.status_code, again.json()["error"]) == (409, "not_sealed")


def test_unsealing_a_prompt_restores_its_messages(client_for, admin, secret_task):
    api = client_for(admin)
    api.post(seal_url(secret_task), {"text": "prompt", "reason": "names"}, format="json")
    answer = api.post(unseal_url(secret_task), {"text": "prompt", "reason": "no"}, format="json")
    assert answer.status_code == 200, answer.content
    prompt = Prompt.objects.get(pk=secret_task.prompt_id)
    assert prompt.messages == [{"role": "user", "content": QUESTION}]
    assert prompt.content_hash == prompt_messages_hash(prompt.messages)
    assert QUESTION in json.dumps(api.get(task_url(secret_task)).json())


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ENGINEER])
def test_only_a_project_admin_can_unseal(client_for, member, admin, secret_task, role):
    client_for(admin).post(
        seal_url(secret_task), {"text": "prompt", "reason": "names"}, format="json"
    )
    caller = member(role, f"someone-{role}")
    answer = client_for(caller).post(
        unseal_url(secret_task), {"text": "prompt", "reason": "x"}, format="json"
    )
    assert answer.status_code == 403
    assert Prompt.objects.get(pk=secret_task.prompt_id).sealed_at is not None
    assert not DataAuditEvent.objects.filter(action="text_unsealed").exists()
