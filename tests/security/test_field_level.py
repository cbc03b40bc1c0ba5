"""Field-level authorisation: the fields that decide who someone is can't be set by them.

No one raises their own role or becomes staff, no one changes a label's author, fields sent
that an endpoint does not own are ignored or refused (never stored), and the registry's
audit entries are read-only.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import Client

from annotation.models import Label, Membership
from tests.security.routes import http_routes
from tests.security.world import changed_tables, db_checksum


def _client(world, actor) -> Client:
    client = Client()
    client.force_login(world.users[actor])
    return client


def _role(world, actor) -> str | None:
    m = Membership.objects.filter(project=world.own, user=world.users[actor]).first()
    return m.role if m else None


@pytest.mark.parametrize("actor", ["annotator", "reviewer", "engineer"])
@pytest.mark.parametrize("role", ["admin", "reviewer", "engineer"])
def test_no_one_can_raise_their_own_role_through_the_api(world, db, actor, role):
    client = _client(world, actor)
    before = db_checksum()
    response = client.post(
        f"/api/projects/{world.own.pk}/members/",
        {"username": world.users[actor].username, "role": role},
        content_type="application/json",
    )
    assert response.status_code in (403, 404)
    assert changed_tables(before, db_checksum()) == []


def test_an_admin_cannot_step_down_and_lock_the_project_or_touch_their_own_row(world, db):
    client = _client(world, "admin")
    response = client.post(
        f"/api/projects/{world.own.pk}/members/",
        {"username": world.users["admin"].username, "role": "annotator"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"] == "own_role"
    assert _role(world, "admin") == "admin"


def test_the_project_page_refuses_changing_your_own_role(world, db):
    client = _client(world, "admin")
    response = client.post(
        f"/projects/{world.own.pk}/manage/",
        {"action": "member", "username": world.users["admin"].username, "role": "annotator"},
        follow=True,
    )
    assert b"You cannot change your own role" in response.content
    assert _role(world, "admin") == "admin"


@pytest.mark.parametrize(
    "extra",
    [
        {"role": "admin"},
        {"memberships": [{"user": 1, "role": "admin"}]},
        {"created_by": 1, "slug": "taken-over", "options": {"x": 1}, "id": 999},
        {"is_staff": True, "is_superuser": True},
    ],
)
def test_project_updates_ignore_fields_the_endpoint_does_not_own(world, db, extra):
    client = _client(world, "admin")
    before = {
        "slug": world.own.slug,
        "created_by": world.own.created_by_id,
        "options": world.own.options,
    }
    response = client.patch(
        f"/api/projects/{world.own.pk}/",
        {"name": "Renamed", **extra},
        content_type="application/json",
    )
    assert response.status_code == 200
    world.own.refresh_from_db()
    assert world.own.name == "Renamed"
    assert {
        "slug": world.own.slug,
        "created_by": world.own.created_by_id,
        "options": world.own.options,
    } == before
    assert _role(world, "admin") == "admin"
    world.users["admin"].refresh_from_db()
    assert not world.users["admin"].is_staff
    assert not world.users["admin"].is_superuser


def test_no_endpoint_lets_a_user_edit_their_own_account_flags(world, db):
    client = _client(world, "annotator")
    for method in ("patch", "put", "post"):
        response = getattr(client, method)(
            "/api/me/", {"is_staff": True}, content_type="application/json"
        )
        assert response.status_code == 405
    world.users["annotator"].refresh_from_db()
    assert not world.users["annotator"].is_staff


@pytest.mark.parametrize(
    "extra",
    [
        {"annotator": "victim"},
        {"annotator_id": None},
        {"author": None, "user": None, "user_id": None, "task": None, "task_id": None},
        {"reviewed_at": "2020-01-01T00:00:00Z", "version": 99, "source": "import"},
    ],
)
def test_no_one_can_change_a_labels_author(world, db, extra):
    label_id = world.ids("own", "annotator")["label_id"]
    other = world.users["reviewer"].pk
    extra = {k: (other if v is None else v) for k, v in extra.items()}
    client = _client(world, "annotator")
    response = client.patch(
        f"/api/labels/{label_id}/",
        {"payload": {"choice": "B", "strength": "slight", **extra}, **extra},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    label = Label.objects.get(pk=label_id)
    assert label.annotator_id == world.users["annotator"].pk
    assert label.reviewed_at is None
    assert label.source != "import"
    assert label.version == 2
    assert not set(extra) & set(label.payload)  # unknown payload keys are not stored


def test_a_label_submitted_for_someone_else_is_still_yours(world, db):
    ids = world.ids("own", "reviewer")
    client = _client(world, "reviewer")
    response = client.post(
        f"/api/tasks/{ids['task_id']}/labels/",
        {
            "payload": {"choice": "A", "strength": "clear"},
            "annotator": world.users["annotator"].pk,
            "annotator_id": world.users["annotator"].pk,
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    label = Label.objects.get(pk=response.json()["id"])
    assert label.annotator_id == world.users["reviewer"].pk


@pytest.mark.parametrize("actor", ["reviewer", "admin", "engineer"])
def test_no_one_edits_another_persons_label(world, db, actor):
    label_id = world.ids("own", "annotator")["label_id"]
    client = _client(world, actor)
    before = db_checksum()
    response = client.patch(
        f"/api/labels/{label_id}/",
        {"payload": {"choice": "B", "strength": "strong"}},
        content_type="application/json",
    )
    assert response.status_code == 404
    assert changed_tables(before, db_checksum()) == []


# The registry's audit trails; any other route about an audit trail is held to the same rule.
AUDIT_ROUTES = {"api-model-audit", "api-model-version-audit"}


def test_audit_routes_are_read_only():
    """Every route about an audit trail serves reads only (no PUT/PATCH/DELETE/POST)."""
    audit = [r for r in http_routes() if "audit" in r.template]
    # An audit route renamed or gone would leave nothing to check: say so instead of passing.
    names = {r.name for r in audit}
    assert names >= AUDIT_ROUTES, f"audit routes found: {sorted(names)}"
    for route in audit:
        methods = _declared_methods(route.callback) or route.methods
        assert methods == ("get",), f"{route} accepts {methods}"


def _declared_methods(view) -> tuple[str, ...] | None:
    """The methods a function view's ``require_http_methods`` (``require_GET``...) allows,
    found through the decorators' ``__wrapped__`` chain; None where none is declared (a
    function view otherwise says nothing of its methods)."""
    while view is not None:
        names = getattr(getattr(view, "__code__", None), "co_freevars", ())
        if "request_method_list" in names:
            cell = view.__closure__[names.index("request_method_list")]
            return tuple(m.lower() for m in cell.cell_contents)
        view = getattr(view, "__wrapped__", None)
    return None


def test_no_one_approves_their_own_training_run(world, db):
    """The person who launched a run cannot approve its result, even as a project admin with
    the review capability."""
    from models_registry import services as registry
    from rlhf.models import TrainingRun
    from tests.security.world import _tiny_model_folder

    admin = world.users["admin"]
    run = TrainingRun.objects.get(pk=world.objects[("own", "admin")]["run_id"])
    candidate = registry.model_version_register(
        project=world.own, folder=_tiny_model_folder(), name="own-run", registered_by=admin,
        launched_by=admin, training_run=run,
    )  # fmt: skip
    client = _client(world, "admin")
    response = client.post(
        f"/api/models/{candidate.pk}/transition/",
        {"to_state": "in_review", "reason": "ready"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    before = db_checksum()
    response = client.post(
        f"/api/models/{candidate.pk}/transition/",
        {"to_state": "approved", "reason": "looks great to me"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"] == "own_run"
    assert changed_tables(before, db_checksum()) == []


def test_audit_entries_cannot_be_edited_or_deleted(world, db):
    from models_registry.models import AuditEvent as audit_event

    assert audit_event.objects.exists()  # the world registered a base model
    with pytest.raises(Exception, match="cannot be updated"):
        audit_event.objects.all().update(reason="rewritten")
    with pytest.raises(Exception, match="cannot be deleted"):
        audit_event.objects.all().delete()
    first = audit_event.objects.order_by("pk").first()
    first.reason = "rewritten"
    with pytest.raises(Exception, match="cannot be updated"):
        first.save()
    if connection.vendor != "postgresql":
        return
    # Below the ORM too: a trigger refuses UPDATE and DELETE from any client.
    table = connection.ops.quote_name(audit_event._meta.db_table)
    for sql in (f"UPDATE {table} SET reason = 'x'", f"DELETE FROM {table}"):  # noqa: S608
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)
    assert not audit_event.objects.filter(reason__in=["x", "rewritten"]).exists()
