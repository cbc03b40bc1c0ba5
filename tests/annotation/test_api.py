"""The annotation API over HTTP: authentication, access gates, idempotent submit."""

import json

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Label, Project, Response, Task, TaskItem, TaskKind
from annotation.opaque import item_ref, task_ref
from annotation.roles import Role


def test_anonymous_requests_are_refused(project):
    response = APIClient().get(f"/api/projects/{project.pk}/")
    assert response.status_code in (401, 403)


def test_token_authentication_works(project, admin_user):
    client = APIClient()
    token = client.post(
        "/api/auth/token/", {"username": admin_user.username, "password": "pw-alice-admin"}
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"/api/projects/{project.pk}/").json()["name"] == "Helpfulness"


def test_a_foreign_project_is_404_and_nothing_changes(project, make_user, client_for, make_task):
    make_task()
    outsider = make_user("mallory")
    client = client_for(outsider)
    for method, url, body in [
        ("get", f"/api/projects/{project.pk}/", None),
        ("patch", f"/api/projects/{project.pk}/", {"name": "pwned"}),
        ("post", f"/api/projects/{project.pk}/tasks/next/", {}),
        ("get", f"/api/projects/{project.pk}/progress/", None),
        ("post", f"/api/projects/{project.pk}/members/", {"username": "mallory", "role": "admin"}),
    ]:
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url)
        assert response.json() == {"error": "not_found", "detail": "Not found."}
    assert Project.objects.get().name == "Helpfulness"
    assert not project.memberships.filter(user=outsider).exists()


def test_an_annotator_cannot_manage(project, annotator, client_for):
    response = client_for(annotator).patch(
        f"/api/projects/{project.pk}/", {"overlap": 9}, format="json"
    )
    assert response.status_code == 403
    assert Project.objects.get().overlap == 2


def test_an_annotator_cannot_open_a_task_they_were_not_given(
    project, member, client_for, make_task
):
    task = make_task()
    other = member()
    assert client_for(other).get(f"/api/tasks/{task.pk}/").status_code == 404


def test_next_then_submit_with_idempotency_key(project, annotator, client_for, make_task):
    task = make_task()
    client = client_for(annotator)
    shown = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    assert shown["task_id"] == task_ref(task.pk)
    assert "model_name" not in json.dumps(shown)
    body = {"payload": {"choice": "left", "strength": "slight"}, "duration_ms": 1500}
    url = f"/api/tasks/{task.pk}/labels/"
    first = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="abcd-1234-efgh")
    replay = client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="abcd-1234-efgh")
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert first.json()["shown_order"] == [r["id"] for r in shown["responses"]]
    reused = client.post(
        url, {"payload": {"choice": "tie"}}, format="json", HTTP_IDEMPOTENCY_KEY="abcd-1234-efgh"
    )
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert Label.objects.count() == 1


def test_nothing_left_is_204(project, annotator, client_for):
    response = client_for(annotator).post(f"/api/projects/{project.pk}/tasks/next/", {})
    assert response.status_code == 204


def test_invalid_payload_is_400_with_the_field(project, annotator, client_for, make_task):
    task = make_task()
    client = client_for(annotator)
    client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    response = client.post(
        f"/api/tasks/{task.pk}/labels/", {"payload": {"choice": "maybe"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "choice"
    assert Task.objects.get().label_count == 0


def test_edit_through_the_api_and_read_revisions(project, annotator, client_for, make_task):
    task = make_task()
    client = client_for(annotator)
    client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    label_id = client.post(
        f"/api/tasks/{task.pk}/labels/", {"payload": {"choice": "left"}}, format="json"
    ).json()["id"]
    edited = client.patch(f"/api/labels/{label_id}/", {"payload": {"choice": "both_bad"}},
                          format="json")  # fmt: skip
    assert edited.json()["payload"]["outcome"] == "both_bad"
    revisions = client.get(f"/api/labels/{label_id}/revisions/").json()
    assert [r["version"] for r in revisions] == [1]


def test_someone_elses_label_is_404(project, member, client_for, make_task):
    task = make_task()
    a, b = member(), member()
    client_for(a).post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")
    label_id = (
        client_for(a)
        .post(f"/api/tasks/{task.pk}/labels/", {"payload": {"choice": "left"}}, format="json")
        .json()["id"]
    )
    assert client_for(b).get(f"/api/labels/{label_id}/").status_code == 404
    patched = client_for(b).patch(
        f"/api/labels/{label_id}/", {"payload": {"choice": "tie"}}, format="json"
    )
    assert patched.status_code == 404
    assert Label.objects.get().payload["outcome"] != "tie"
    reviewer = member(Role.REVIEWER)
    # the task (overlap 2) is still open: its labels are sealed to reviewers (issue 15) ...
    assert client_for(reviewer).get(f"/api/labels/{label_id}/").status_code == 404
    # ... until it is done
    Task.objects.filter(pk=task.pk).update(status="done")
    assert client_for(reviewer).get(f"/api/labels/{label_id}/").status_code == 200


def test_import_through_the_api(project, admin_user, client_for):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "hello?"}\n{"prompt": "bye?"}\n')
    response = client_for(admin_user).post(
        f"/api/projects/{project.pk}/imports/", {"file": upload, "kind": "prompts"},
        format="multipart",
    )  # fmt: skip
    assert response.status_code == 201
    assert response.json()["counts"]["prompts_created"] == 2
    bad = SimpleUploadedFile("p.jsonl", b'{"prompt": "hello?"}\n[1, 2]\n')
    refused = client_for(admin_user).post(
        f"/api/projects/{project.pk}/imports/", {"file": bad, "kind": "prompts"},
        format="multipart",
    )  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "line 2: each row must be a JSON object (nothing was imported). "
        'A prompts row looks like: {"prompt": "How do I boil an egg?"}'
    )
    assert refused.json()["example"] == '{"prompt": "How do I boil an egg?"}'


def test_schema_is_generated(admin_user, client_for):
    response = client_for(admin_user).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/tasks/{task_id}/labels/" in response.json()["paths"]


def test_submit_to_a_task_of_another_project_is_404_and_stores_nothing(
    project, make_user, client_for, make_task
):
    # given a task in a project the user is not a member of
    task = make_task()
    outsider = make_user("mallory")
    # when they submit a label to it, then it is 404 and nothing is stored
    response = client_for(outsider).post(
        f"/api/tasks/{task.pk}/labels/", {"payload": {"choice": "left"}}, format="json"
    )
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not found."}
    assert not Label.objects.exists()


def test_a_data_role_may_read_any_task_of_its_project(project, member, make_task):
    from django.core.exceptions import PermissionDenied

    from annotation.access import access_task
    from annotation.roles import Capability

    task = make_task()
    engineer = member(Role.ENGINEER)
    assert access_task(engineer, task.pk, capability=Capability.DATA) == task
    with pytest.raises(PermissionDenied):  # engineers do not annotate
        access_task(engineer, task.pk)


def _ids_apart(make_task, admin_user) -> None:
    """Make the next task's response ids and task item ids differ: each task writes as many
    of one as of the other, so pad the responses' sequence past any overlap (in a project of
    its own, out of the annotator's queue)."""
    elsewhere = services.project_create(name="Padding", created_by=admin_user)
    padding = make_task(TaskKind.RANKING, target=elsewhere)
    item = TaskItem.objects.filter(task=padding).order_by("pk").first()
    for n in range(max(0, 4 - (item.response_id - item.pk))):
        Response.objects.create(
            prompt=padding.prompt, text=f"pad {n}", content_hash=f"pad{n}", origin="model"
        )


def test_an_annotator_names_responses_by_task_item_ids_never_response_ids(
    project, annotator, client_for, make_task, admin_user
):
    # given a ranking task whose response ids differ from its task items' ids
    _ids_apart(make_task, admin_user)
    task = make_task(TaskKind.RANKING)
    items = {item_ref(i.pk): i.response_id for i in TaskItem.objects.filter(task=task)}
    assert not set(items) & set(items.values())
    client = client_for(annotator)
    # when the annotator claims it
    view = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    assert view["task_id"] == task_ref(task.pk)
    shown = [r["id"] for r in view["responses"]]
    # then the responses are named by their task items' ids (as refs, see annotation.opaque)
    assert sorted(shown) == sorted(items)
    url = f"/api/tasks/{task.pk}/labels/"
    # and a ranking naming a response id is refused, with nothing stored
    raw = [[items[shown[0]]], [shown[1]], [shown[2]]]
    refused = client.post(url, {"payload": {"ranking": raw}}, format="json")
    assert refused.status_code == 400
    assert refused.json()["detail"] == f"{items[shown[0]]} is not a response of this task"
    assert Label.objects.filter(task=task).count() == 0
    # when it ranks in the ids it was shown, with a tie
    ranking = [[shown[2]], [shown[0], shown[1]]]
    made = client.post(url, {"payload": {"ranking": ranking}}, format="json")
    # then the label is stored in response ids, and read back in the ids it was shown
    assert made.status_code == 201
    label = Label.objects.get(task=task)
    assert label.payload["ranking"] == [
        [items[shown[2]]],
        sorted([items[shown[0]], items[shown[1]]]),
    ]
    assert label.shown_order == [items[i] for i in shown]
    assert made.json()["payload"]["ranking"] == [[shown[2]], sorted(shown[:2], key=items.get)]
    assert made.json()["shown_order"] == shown
    listed = client.get(f"/api/labels/?project={project.pk}").json()
    assert [entry["payload"]["ranking"] for entry in listed] == [made.json()["payload"]["ranking"]]
    # when it edits the label, in the same ids
    edited = client.patch(
        f"/api/labels/{label.pk}/", {"payload": {"ranking": [[i] for i in shown]}}, format="json"
    )
    # then the stored label follows, and its revision reads in the shown ids too
    assert edited.status_code == 200
    assert Label.objects.get(pk=label.pk).payload["ranking"] == [[items[i]] for i in shown]
    revisions = client.get(f"/api/labels/{label.pk}/revisions/").json()
    assert [r["payload"]["ranking"] for r in revisions] == [made.json()["payload"]["ranking"]]
