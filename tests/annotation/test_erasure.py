"""Erasure: an annotator's account goes, their labels stay under a pseudonym.

``test_staff_erase_an_annotator_through_the_api...`` fails on the code before erasure existed
(the route was a 404 and ``Label.annotator`` PROTECT stopped any delete)."""

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models.deletion import ProtectedError
from rest_framework.test import APIClient

from annotation import services
from annotation.audit import DataAuditEvent
from annotation.invitations import Invitation
from annotation.models import IdempotencyRecord, Label, LabelRevision, Lease, Membership
from annotation.roles import Role
from annotation.tokens import ApiToken

User = get_user_model()


@pytest.fixture
def labelled(project, annotator, make_task, admin_user):
    """The annotator labelled two tasks (with rationales, one edited), holds a lease, has a
    token, a browser session, an idempotency record and an invitation to another project."""
    annotator.email = "ann@example.org"
    annotator.save()
    for _ in range(3):
        make_task()
    labels = []
    for reason in ("the first is kinder", "the second cites a source"):
        lease = services.task_claim_next(project=project, annotator=annotator)
        labels.append(
            services.label_submit(
                task=lease.task,
                annotator=annotator,
                payload={"choice": "A", "strength": "clear", "rationale": reason},
                idempotency_key=f"key-{reason[:12]}",
            ).label
        )
    services.label_edit(
        label=labels[0], editor=annotator,
        payload={"choice": "B", "strength": "slight", "rationale": "on reflection, B"},
    )  # fmt: skip
    services.task_claim_next(project=project, annotator=annotator)
    services.api_token_create(user=annotator, name="laptop", scope="annotate", expires_in_days=30)
    other = services.project_create(name="Other", created_by=admin_user)
    services.membership_set(project=other, user=admin_user, role=Role.ADMIN)
    Invitation.objects.create(
        project=other, invitee="ann@example.org", role=Role.ANNOTATOR, invited_by=admin_user
    )
    browser = APIClient()
    assert browser.login(username="ann", password="pw-ann")
    return labels, browser


def _payloads(user):
    return sorted(
        (label.task_id, label.payload["outcome"], label.payload["rationale"])
        for label in Label.objects.filter(annotator=user)
    )


def test_a_user_with_labels_cannot_simply_be_deleted(labelled, annotator):
    with pytest.raises(ProtectedError):
        annotator.delete()


def test_staff_erase_an_annotator_through_the_api_and_the_labels_stay_under_a_pseudonym(
    labelled, annotator, admin_user, client_for
):
    # given an annotator with labels, a token, a session, a lease and an invitation
    labels, browser = labelled
    before = _payloads(annotator)
    assert Invitation.objects.filter(invitee="ann@example.org").count() == 1

    # when platform staff erase the account
    response = client_for(admin_user).post(f"/api/users/{annotator.pk}/erase/")

    # then the account is a pseudonym that cannot sign in, and owns the same labels
    assert response.status_code == 200, response.content
    body = response.json()
    user = User.objects.get(pk=annotator.pk)
    assert user.username == body["pseudonym"]
    assert user.username.startswith("erased-")
    assert (user.email, user.first_name, user.is_active, user.has_usable_password()) == (
        "", "", False, False,
    )  # fmt: skip
    assert [(t, o) for t, o, _ in _payloads(user)] == [(t, o) for t, o, _ in before]
    # rationales are removed (the project keeps none by default), revisions' too
    assert {r for _, _, r in _payloads(user)} == {""}
    assert [r.payload["rationale"] for r in LabelRevision.objects.filter(label__in=labels)] == [""]
    # and everything that let the person act or named them is gone
    assert ApiToken.objects.filter(user=user).count() == 0
    assert Membership.objects.filter(user=user).count() == 0
    assert Lease.objects.filter(annotator=user).count() == 0
    assert IdempotencyRecord.objects.filter(user=user).count() == 0
    assert Invitation.objects.filter(invitee="ann@example.org").count() == 0
    assert not [s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id")]
    assert browser.get("/api/me/").status_code in (401, 403)
    assert body | {"user_id": 0, "pseudonym": ""} == {
        "user_id": 0, "pseudonym": "", "labels_kept": 2, "rationales_removed": 2,
        "rationales_kept": 0, "tokens": 1, "sessions": 1, "memberships": 1, "invitations": 1,
        "leases": 3,
    }  # fmt: skip
    # the audit log says who erased which account, under the pseudonym only
    event = DataAuditEvent.objects.get(action="user_erased")
    assert (event.actor, event.subject) == (admin_user, f"user:{annotator.pk}")
    assert "ann" not in json.dumps(event.details).replace(user.username, "")
    # no table keeps the old username or e-mail in clear
    with connection.cursor() as cursor:
        cursor.execute("SELECT username, email FROM auth_user WHERE id = %s", [user.pk])
        assert cursor.fetchone() == (user.username, "")


def test_a_project_may_keep_the_rationales_of_an_erased_annotator(
    labelled, annotator, project, admin_user
):
    services.project_settings_update(
        project=project, changes={"privacy": {"keep_rationales_on_erasure": True}}
    )
    before = _payloads(annotator)
    result = services.user_erase(user=annotator, actor=admin_user)
    assert (result.rationales_kept, result.rationales_removed) == (2, 0)
    assert _payloads(annotator) == before


def _state(user):
    user = User.objects.get(pk=user.pk)
    return (
        user.username, user.email, user.is_active, user.password,
        ApiToken.objects.filter(user=user).count(), Membership.objects.filter(user=user).count(),
        _payloads(user), DataAuditEvent.objects.count(),
    )  # fmt: skip


def test_refused_erasures_change_nothing(labelled, annotator, member, admin_user, client_for):
    before = _state(annotator)
    # not staff: 403
    reviewer = member(Role.REVIEWER, "rita")
    assert client_for(reviewer).post(f"/api/users/{annotator.pk}/erase/").status_code == 403
    # no such user: 404
    assert client_for(admin_user).post("/api/users/987654/erase/").status_code == 404
    # one's own, without the password or the word: 400 naming the field
    own = client_for(annotator)
    wrong = own.post("/api/me/erase/", {"password": "nope", "confirm": "erase"}, format="json")
    assert (wrong.status_code, wrong.json()["field"]) == (400, "password")
    unsure = own.post("/api/me/erase/", {"password": "pw-ann"}, format="json")
    assert (unsure.status_code, unsure.json()["field"]) == (400, "confirm")
    assert _state(annotator) == before
    # the only admin of a project: 409 until the project has another admin
    lead = member(Role.ADMIN, "lead")
    Membership.objects.filter(user=admin_user).delete()
    lead_before = _state(lead)
    refused = client_for(admin_user).post(f"/api/users/{lead.pk}/erase/")
    assert (refused.status_code, refused.json()["error"]) == (409, "last_admin")
    assert _state(lead) == lead_before
    # a superuser: 409
    root = User.objects.create_superuser("root", password="pw-root")
    refused = client_for(admin_user).post(f"/api/users/{root.pk}/erase/")
    assert (refused.status_code, refused.json()["error"]) == (409, "erase_superuser")
    # twice: 409 the second time, nothing more recorded
    assert client_for(admin_user).post(f"/api/users/{annotator.pk}/erase/").status_code == 200
    after = _state(annotator)
    again = client_for(admin_user).post(f"/api/users/{annotator.pk}/erase/")
    assert (again.status_code, again.json()["error"]) == (409, "already_erased")
    assert _state(annotator) == after


def test_a_person_may_erase_their_own_account(labelled, annotator):
    _labels, browser = labelled
    response = browser.post(
        "/api/me/erase/", {"password": "pw-ann", "confirm": "erase"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert User.objects.get(pk=annotator.pk).username.startswith("erased-")
    assert Label.objects.filter(annotator_id=annotator.pk).count() == 2
    event = DataAuditEvent.objects.get(action="user_erased")
    assert (event.actor, event.details["self_requested"]) == (None, True)
    assert browser.get("/api/me/").status_code in (401, 403)


def test_a_staff_member_cannot_erase_their_own_account(admin_user, client_for):
    response = client_for(admin_user).post(
        "/api/me/erase/", {"password": "pw-alice-admin", "confirm": "erase"}, format="json"
    )
    assert (response.status_code, response.json()["error"]) == (409, "erase_own_staff")
    assert User.objects.get(pk=admin_user.pk).username == "alice-admin"


def test_the_erase_user_command(labelled, annotator, admin_user):
    with pytest.raises(CommandError, match="--yes"):
        call_command("erase_user", "ann")
    assert User.objects.get(pk=annotator.pk).username == "ann"
    out = StringIO()
    call_command("erase_user", "ann", "--yes", "--actor", admin_user.username, stdout=out)
    result = json.loads(out.getvalue())
    assert User.objects.get(pk=annotator.pk).username == result["pseudonym"]
    assert DataAuditEvent.objects.get(action="user_erased").actor == admin_user
    with pytest.raises(CommandError, match="no user"):
        call_command("erase_user", "ann", "--yes")


def test_the_admin_action_erases(labelled, annotator, make_user):
    root = User.objects.create_superuser("root", password="pw-root")
    client = APIClient()
    client.force_login(root)
    response = client.post(
        "/admin/auth/user/",
        {"action": "erase_selected", "_selected_action": [annotator.pk]},
    )
    assert response.status_code == 302
    assert User.objects.get(pk=annotator.pk).username.startswith("erased-")
