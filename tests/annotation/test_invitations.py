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
