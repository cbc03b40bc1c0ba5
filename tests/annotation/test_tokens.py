"""API tokens: only a hash is stored, they expire, carry a scope, die with the password.

Written against the HTTP API (and the database as an operator would inspect it), so each
test could run, and fail, against DRF's plaintext tokens too.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Label
from annotation.roles import Role

User = get_user_model()


def _obtain(username, password, **extra) -> str:
    response = APIClient().post(
        "/api/auth/token/", {"username": username, "password": password, **extra}
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _client(secret) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def _every_text_value_in_the_database() -> list[str]:
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            values += [str(v) for row in cursor.fetchall() for v in row if v is not None]
    return values


def _refused_as_unauthenticated(response) -> bool:
    # 403, not 401: session authentication comes first and names no WWW-Authenticate scheme.
    return response.status_code == 403 and response.json()["error"] == "authentication_failed"


def _created(client, scope, **extra) -> dict:
    response = client.post("/api/tokens/", {"name": f"{scope} token", "scope": scope, **extra})
    assert response.status_code == 201, response.content
    return response.json()


def test_the_secret_is_not_stored_anywhere_in_the_database(project, admin_user):
    secret = _obtain(admin_user.username, "pw-alice-admin")

    assert _client(secret).get(f"/api/projects/{project.pk}/").status_code == 200
    stored = _every_text_value_in_the_database()
    assert not [v for v in stored if secret in v or (len(v) >= 20 and v in secret)]


def test_a_token_stops_working_when_the_password_changes(project, admin_user):
    secret = _obtain(admin_user.username, "pw-alice-admin")
    client = _client(secret)
    assert client.get(f"/api/projects/{project.pk}/").status_code == 200

    user = User.objects.get(pk=admin_user.pk)
    user.set_password("a-new-password-9")
    user.save()

    assert _refused_as_unauthenticated(client.get(f"/api/projects/{project.pk}/"))


def test_a_token_stops_working_when_it_expires(project, admin_user):
    issued = _created(_client(_obtain(admin_user.username, "pw-alice-admin")), "read")
    client = _client(issued["token"])
    assert client.get(f"/api/projects/{project.pk}/").status_code == 200
    assert issued["expires_at"] is not None

    from annotation.tokens import ApiToken

    ApiToken.objects.filter(pk=issued["id"]).update(expires_at=timezone.now() - timedelta(1))

    assert _refused_as_unauthenticated(client.get(f"/api/projects/{project.pk}/"))


def test_the_obtain_endpoint_issues_a_token_that_expires(admin_user):
    response = APIClient().post(
        "/api/auth/token/", {"username": admin_user.username, "password": "pw-alice-admin"}
    )
    body = response.json()
    assert set(body) >= {"token", "expires_at", "scope", "name", "prefix"}
    assert body["scope"] == "admin"
    assert body["token"].startswith(body["prefix"])


def test_a_read_only_token_reads_but_cannot_write(project, member, make_task):
    make_task()
    user = member(Role.ANNOTATOR, "reader")
    read = _client(_created(_client(_obtain("reader", "pw-reader")), "read")["token"])

    assert read.get(f"/api/projects/{project.pk}/progress/").status_code == 200
    refused = read.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json")

    assert refused.status_code == 403
    assert not user.leases.exists()


def test_an_annotate_token_labels_but_cannot_manage(project, member, make_task):
    make_task()
    member(Role.ADMIN, "boss")
    client = _client(_created(_client(_obtain("boss", "pw-boss")), "annotate")["token"])

    task = client.post(f"/api/projects/{project.pk}/tasks/next/", {}, format="json").json()
    submitted = client.post(
        f"/api/tasks/{task['task_id']}/labels/",
        {"payload": {"choice": "A", "strength": "clear"}},
        format="json",
    )
    assert submitted.status_code == 201
    refused = client.patch(f"/api/projects/{project.pk}/", {"name": "x"}, format="json")

    assert refused.status_code == 403
    project.refresh_from_db()
    assert project.name == "Helpfulness"
    assert Label.objects.count() == 1


def test_a_scope_never_grants_more_than_the_role(project, member):
    member(Role.ANNOTATOR, "plain")
    client = _client(_created(_client(_obtain("plain", "pw-plain")), "admin")["token"])

    response = client.patch(f"/api/projects/{project.pk}/", {"name": "x"}, format="json")

    assert response.status_code == 403
    project.refresh_from_db()
    assert project.name == "Helpfulness"


def test_users_list_and_revoke_their_own_tokens_only(project, member):
    member(Role.ANNOTATOR, "owner")
    member(Role.ANNOTATOR, "other")
    owner = _client(_obtain("owner", "pw-owner"))
    issued = _created(owner, "read")
    other = _client(_obtain("other", "pw-other"))

    listed = owner.get("/api/tokens/").json()
    assert issued["id"] in [t["id"] for t in listed]
    assert all("token" not in t and "digest" not in t for t in listed)
    assert other.delete(f"/api/tokens/{issued['id']}/").status_code == 404
    assert _client(issued["token"]).get("/api/me/").status_code == 200

    assert owner.delete(f"/api/tokens/{issued['id']}/").status_code == 204

    assert _refused_as_unauthenticated(_client(issued["token"]).get("/api/me/"))
    states = {t["id"]: t["state"] for t in owner.get("/api/tokens/").json()}
    assert states[issued["id"]] == "revoked"


def test_a_narrow_token_cannot_mint_a_wider_one(member):
    member(Role.ANNOTATOR, "minter")
    read = _client(_created(_client(_obtain("minter", "pw-minter")), "read")["token"])

    response = read.post("/api/tokens/", {"name": "wider", "scope": "admin"})

    assert response.status_code == 403


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token tdm_not-a-real-token"])
def test_a_bad_token_header_is_401(project, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert _refused_as_unauthenticated(client.get(f"/api/projects/{project.pk}/"))


# A real transaction: SQLite's schema editor refuses to run inside the test's atomic block.
@pytest.mark.django_db(transaction=True)
def test_the_migration_drops_drf_plaintext_tokens():
    import importlib

    migration = importlib.import_module("annotation.migrations.0004_api_tokens")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id int)")
        cursor.execute("INSERT INTO authtoken_token VALUES ('a-plaintext-key', 1)")
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["authtoken", "0001_initial", timezone.now()],
        )

    with connection.schema_editor() as editor:
        migration.drop_plaintext_drf_tokens(None, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone()[0] == 0
