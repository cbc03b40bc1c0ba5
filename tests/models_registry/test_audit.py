"""The audit log is append-only through every interface: ORM, raw SQL, admin, API."""

import pytest
from django.contrib import admin
from django.db import connection, transaction
from django.db.models.deletion import ProtectedError
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.roles import Role
from models_registry.models import AuditEvent, AuditLogImmutable, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(base_version):
    return AuditEvent.objects.filter(version=base_version).order_by("id").first()


def unchanged(event):
    fresh = AuditEvent.objects.get(pk=event.pk)
    return (fresh.reason, fresh.actor_name, fresh.evidence) == (
        event.reason,
        event.actor_name,
        event.evidence,
    )


def test_saving_an_existing_event_is_refused(event):
    event.reason = "rewritten history"
    with pytest.raises(AuditLogImmutable):
        event.save()
    event.refresh_from_db()
    assert event.reason != "rewritten history"


def test_deleting_an_event_is_refused(event):
    with pytest.raises(AuditLogImmutable):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.parametrize(
    "attempt",
    [
        lambda qs: qs.update(reason="x"),
        lambda qs: qs.delete(),
        lambda qs: qs.bulk_update(list(qs), ["reason"]),
        lambda qs: qs.update_or_create(pk=qs.first().pk, defaults={"reason": "x"}),
    ],
    ids=["update", "delete", "bulk_update", "update_or_create"],
)
def test_queryset_writes_are_refused(event, attempt):
    count = AuditEvent.objects.count()
    with pytest.raises(AuditLogImmutable):
        attempt(AuditEvent.objects.filter(pk=event.pk))
    assert AuditEvent.objects.count() == count
    assert unchanged(event)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE models_registry_auditevent SET reason = 'x' WHERE id = %s",
        "DELETE FROM models_registry_auditevent WHERE id = %s",
    ],
    ids=["update", "delete"],
)
def test_the_database_refuses_raw_sql_on_postgresql(event, sql):
    from django.db import DatabaseError

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event.pk])
    assert unchanged(event)


def test_a_version_in_the_log_cannot_be_deleted(base_version):
    with pytest.raises(ProtectedError):
        ModelVersion.objects.filter(pk=base_version.pk).delete()
    assert ModelVersion.objects.filter(pk=base_version.pk).exists()


def test_the_admin_offers_no_change_or_delete(event, admin_user):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    model_admin = admin.site._registry[AuditEvent]
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert not model_admin.has_add_permission(request)


def test_the_api_offers_no_way_to_change_or_delete_events(event, member):
    admin_member = member(Role.ADMIN, "adam-admin")
    client = APIClient()
    client.force_authenticate(admin_member)
    url = reverse("api-model-audit", args=[event.project_id])
    assert client.get(url).status_code == 200
    for method in ("put", "patch", "delete", "post"):
        assert getattr(client, method)(url, {"reason": "x"}, format="json").status_code == 405
    assert unchanged(event)
