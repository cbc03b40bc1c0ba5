"""Membership by consent: an admin invites, the invitee accepts or declines; an invitation
tells the admin nothing about whether the account exists."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from annotation.models import Membership
from annotation.roles import Role

User = get_user_model()


@pytest.fixture
def project_admin(project, member):
    return member(Role.ADMIN, "proj-admin")  # not platform staff


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _invite(project, admin, who, role="reviewer"):
    return _api(admin).post(
        f"/api/projects/{project.pk}/members/", {"username": who, "role": role}, format="json"
    )


def test_inviting_answers_the_same_whether_or_not_the_account_exists(project, project_admin):
    User.objects.create_user("real-person", password="pw-real-person-1")

    existing = _invite(project, project_admin, "real-person")
    missing = _invite(project, project_admin, "nobody-by-this-name")

    assert existing.status_code == missing.status_code == 202
    assert existing.json() == {"status": "invitation created"}
    assert missing.json() == existing.json()
    assert not Membership.objects.filter(project=project, user__username="real-person").exists()


def test_the_invitee_accepts_and_only_then_is_a_member(project, project_admin):
    person = User.objects.create_user("invitee", password="pw-invitee-1")
    _invite(project, project_admin, "invitee", role="reviewer")

    pending = _api(person).get("/api/invitations/").json()
    assert [(i["project_name"], i["role"]) for i in pending] == [("Helpfulness", "reviewer")]
    assert not Membership.objects.filter(project=project, user=person).exists()
    home = Client()
    home.force_login(person)
    assert "Helpfulness" in home.get("/").content.decode()

    response = _api(person).post(
        f"/api/invitations/{pending[0]['id']}/", {"accept": True}, format="json"
    )

    assert response.status_code == 200
    assert Membership.objects.get(project=project, user=person).role == "reviewer"
    assert _api(person).get("/api/invitations/").json() == []


def test_a_declined_invitation_adds_no_one(project, project_admin):
    person = User.objects.create_user("reluctant", password="pw-reluctant-1")
    _invite(project, project_admin, "reluctant")
    invitation = _api(person).get("/api/invitations/").json()[0]

    response = _api(person).post(
        f"/api/invitations/{invitation['id']}/", {"accept": False}, format="json"
    )

    assert response.status_code == 200
    assert not Membership.objects.filter(project=project, user=person).exists()
    again = _api(person).post(
        f"/api/invitations/{invitation['id']}/", {"accept": True}, format="json"
    )
    assert again.status_code == 404
    assert not Membership.objects.filter(project=project, user=person).exists()


def test_someone_else_cannot_accept_an_invitation(project, project_admin):
    person = User.objects.create_user("meant-for", password="pw-meant-for-1")
    thief = User.objects.create_user("thief", password="pw-thief-1")
    _invite(project, project_admin, "meant-for")
    invitation = _api(person).get("/api/invitations/").json()[0]

    response = _api(thief).post(
        f"/api/invitations/{invitation['id']}/", {"accept": True}, format="json"
    )

    assert response.status_code == 404
    assert not Membership.objects.filter(project=project, user=thief).exists()
    assert _api(thief).get("/api/invitations/").json() == []


def test_an_invitation_by_e_mail_reaches_the_account_with_that_address(project, project_admin):
    person = User.objects.create_user("mailed", email="Mailed@Example.org", password="pw-mailed-1")
    assert _invite(project, project_admin, "mailed@example.org").status_code == 202

    pending = _api(person).get("/api/invitations/").json()

    assert [i["role"] for i in pending] == ["reviewer"]


def test_platform_staff_still_add_directly_and_it_is_recorded(project, admin_user):
    person = User.objects.create_user("direct", password="pw-direct-1")

    response = _invite(project, admin_user, "direct", role="engineer")

    assert response.status_code == 200
    assert Membership.objects.get(project=project, user=person).role == "engineer"
    from annotation.models import Invitation

    record = Invitation.objects.get(project=project, user=person)
    assert (record.state, record.invited_by, record.role) == ("added", admin_user, "engineer")


def test_the_manage_page_answers_the_same_for_any_name(project, project_admin):
    User.objects.create_user("exists-page", password="pw-exists-page-1")
    client = Client()
    client.force_login(project_admin)

    def invite(name):
        response = client.post(
            f"/projects/{project.pk}/manage/",
            {"action": "member", "username": name, "role": "annotator"},
            follow=True,
        )
        return [str(m) for m in response.context["messages"]]

    assert invite("exists-page") == invite("does-not-exist") == ["Invitation created."]
    assert not Membership.objects.filter(project=project, user__username="exists-page").exists()


def _pending(person) -> list[dict]:
    return _api(person).get("/api/invitations/").json()


def test_an_admin_revokes_an_invitation_and_it_can_no_longer_be_answered(
    project, project_admin, member
):
    person = User.objects.create_user("revoked-invitee", password="pw-revoked-1")
    _invite(project, project_admin, "revoked-invitee")
    listed = _api(project_admin).get(f"/api/projects/{project.pk}/invitations/").json()
    assert [i["invitee"] for i in listed] == ["revoked-invitee"]
    invitation_id = listed[0]["id"]
    # a member who does not manage the project cannot revoke it
    reviewer = member(Role.REVIEWER, "not-an-admin")
    url = f"/api/projects/{project.pk}/invitations/{invitation_id}/"
    assert _api(reviewer).delete(url).status_code == 403

    assert _api(project_admin).delete(url).status_code == 204

    assert _pending(person) == []
    answer = _api(person).post(f"/api/invitations/{invitation_id}/", {"accept": True},
                               format="json")  # fmt: skip
    assert answer.status_code == 404
    assert not Membership.objects.filter(project=project, user=person).exists()
    assert _api(project_admin).get(f"/api/projects/{project.pk}/invitations/").json() == []
    assert _api(project_admin).delete(url).status_code == 404  # nothing left to revoke


def test_the_manage_page_revokes_an_invitation(project, project_admin):
    from annotation.invitations import Invitation, InvitationState

    _invite(project, project_admin, "page-invitee")
    invitation = Invitation.objects.get(invitee="page-invitee")
    page = Client()
    page.force_login(project_admin)
    assert (
        'data-testid="revoke-invitation"'
        in page.get(f"/projects/{project.pk}/manage/").content.decode()
    )
    response = page.post(
        f"/projects/{project.pk}/manage/",
        {"action": "revoke_invitation", "invitation_id": invitation.pk},
    )
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.state == InvitationState.REVOKED
    assert invitation.revoked_by == project_admin


def test_an_invitation_expires_and_inviting_again_renews_it(project, project_admin, settings):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.invitations import Invitation

    settings.TANDEM_INVITATION_DAYS = 3
    person = User.objects.create_user("late-invitee", password="pw-late-1")
    _invite(project, project_admin, "late-invitee")
    invitation = Invitation.objects.get(invitee="late-invitee")
    left = invitation.expires_at - timezone.now()
    assert timedelta(days=3) - timedelta(minutes=1) < left <= timedelta(days=3)
    # when its time has passed
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    # then the invitee no longer sees it nor can answer it, and the admin's list drops it
    assert _pending(person) == []
    answer = _api(person).post(f"/api/invitations/{invitation.pk}/", {"accept": True},
                               format="json")  # fmt: skip
    assert answer.status_code == 404
    page = Client()
    page.force_login(person)
    assert page.post(f"/invitations/{invitation.pk}/", {"answer": "accept"}).status_code == 404
    assert _api(project_admin).get(f"/api/projects/{project.pk}/invitations/").json() == []
    assert not Membership.objects.filter(project=project, user=person).exists()
    # and inviting again renews the same invitation, which can then be accepted
    _invite(project, project_admin, "late-invitee")
    assert [i["id"] for i in _pending(person)] == [invitation.pk]
    accepted = _api(person).post(f"/api/invitations/{invitation.pk}/", {"accept": True},
                                 format="json")  # fmt: skip
    assert accepted.status_code == 200
    assert Membership.objects.filter(project=project, user=person).exists()
