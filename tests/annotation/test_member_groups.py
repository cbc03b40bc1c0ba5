"""An optional annotator group on a membership, set by the project's admins through the API
and the manage page (the bias audit compares groups); bad input is a 400 naming the field."""

import pytest
from django.test import Client

from annotation.models import Membership
from annotation.roles import Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(member):
    return (
        member(Role.ADMIN, "proj-admin"),
        member(Role.ANNOTATOR, "ann"),
        member(Role.REVIEWER, "rev"),
    )


def group_of(project, user):
    return Membership.objects.get(project=project, user=user).group


def test_an_admin_sets_and_clears_a_group_through_the_api(project, people, client_for):
    admin, ann, _ = people
    url = f"/api/projects/{project.pk}/members/{ann.pk}/"
    # a membership starts with no group
    assert group_of(project, ann) == ""

    response = client_for(admin).patch(url, {"group": "  site   Nairobi "}, format="json")

    assert response.status_code == 200
    assert response.json() == {"user_id": ann.pk, "username": "ann", "role": "annotator",
                               "group": "site Nairobi"}  # fmt: skip
    listed = client_for(admin).get(f"/api/projects/{project.pk}/members/").json()
    assert {m["username"]: m["group"] for m in listed}["ann"] == "site Nairobi"
    assert client_for(admin).patch(url, {"group": ""}, format="json").status_code == 200
    assert group_of(project, ann) == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [({"group": "x" * 65}, "group"), ({"group": "a\x00b"}, "group"), ({}, "group")],
)
def test_a_bad_group_is_a_400_naming_the_field_and_nothing_changes(
    project, people, client_for, body, field
):
    admin, ann, _ = people
    Membership.objects.filter(project=project, user=ann).update(group="kept")

    response = client_for(admin).patch(
        f"/api/projects/{project.pk}/members/{ann.pk}/", body, format="json"
    )

    assert response.status_code == 400
    assert field in response.content.decode()
    assert group_of(project, ann) == "kept"


def test_only_admins_set_groups_and_foreign_members_are_404(project, people, client_for, make_user):
    admin, ann, rev = people
    refused = client_for(rev).patch(
        f"/api/projects/{project.pk}/members/{ann.pk}/", {"group": "x"}, format="json"
    )
    assert refused.status_code in (403, 404)
    stranger = make_user("stranger")
    missing = client_for(admin).patch(
        f"/api/projects/{project.pk}/members/{stranger.pk}/", {"group": "x"}, format="json"
    )
    assert missing.status_code == 404
    assert group_of(project, ann) == ""


def test_the_manage_page_sets_a_group(project, people):
    admin, ann, _ = people
    client = Client()
    client.force_login(admin)
    page = client.get(f"/projects/{project.pk}/manage/").content.decode()
    assert 'name="group"' in page

    response = client.post(
        f"/projects/{project.pk}/manage/",
        {"action": "member_group", "user_id": str(ann.pk), "group": "night shift"},
        follow=True,
    )

    assert response.status_code == 200
    assert group_of(project, ann) == "night shift"
    assert "Group of ann saved." in response.content.decode()
    # a refused value says why on the page and changes nothing
    response = client.post(
        f"/projects/{project.pk}/manage/",
        {"action": "member_group", "user_id": str(ann.pk), "group": "y" * 80},
        follow=True,
    )
    assert "group is longer than 64 characters" in response.content.decode()
    assert group_of(project, ann) == "night shift"
