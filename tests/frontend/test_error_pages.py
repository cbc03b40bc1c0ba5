"""With DEBUG off, pages answer 404 and 403 in the app's style; the API keeps its JSON errors."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation import services
from annotation.roles import Role

ROUTE_LIST_MARKERS = ("URLconf", "api/projects/", "admin/", "runs/", "models/")


@pytest.fixture
def debug_off(settings):
    settings.DEBUG = False
    return settings


@pytest.fixture
def people(db):
    users = get_user_model().objects
    admin = users.create_user("ada-admin", password="pw")
    annotator = users.create_user("ann-annotator", password="pw")
    project = services.project_create(name="Helpfulness", created_by=admin, overlap=1)
    services.membership_set(project=project, user=annotator, role=Role.ANNOTATOR)
    return {"admin": admin, "annotator": annotator, "project": project}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _assert_styled_page(response, *, status: int, heading: str):
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    assert [t.name for t in response.templates][:2] == [f"{status}.html", "frontend/base.html"]
    html = response.content.decode()
    assert f"<h1>{heading}</h1>" in html
    assert '<header class="topbar">' in html  # the app's look
    assert "frontend/tandem.css" in html
    assert '<a class="button primary" href="/">' in html  # the way home
    for marker in ROUTE_LIST_MARKERS:
        assert marker not in html, marker
    assert response["Content-Security-Policy"]


def test_an_unknown_page_is_the_styled_404_without_a_list_of_urls(debug_off, people):
    # when a signed-in person opens an address that matches no route
    response = _client(people["annotator"]).get("/no-such-page/")
    # then the app's own 404 page answers
    _assert_styled_page(response, status=404, heading="Page not found")


def test_another_projects_page_is_the_same_styled_404(debug_off, people):
    # given a project the person is not a member of
    outsider = get_user_model().objects.create_user("olga-outsider", password="pw")
    # when they open its manage page, the answer does not tell that it exists
    response = _client(outsider).get(f"/projects/{people['project'].pk}/manage/")
    _assert_styled_page(response, status=404, heading="Page not found")


def test_a_refused_page_is_the_styled_403(debug_off, people):
    # when an annotator opens the project's manage page
    response = _client(people["annotator"]).get(f"/projects/{people['project'].pk}/manage/")
    # then the app's own 403 page answers
    _assert_styled_page(response, status=403, heading="Not allowed")


def test_api_errors_stay_json(debug_off, people):
    client = _client(people["annotator"])
    # an address under /api/ that matches no endpoint
    unknown = client.get("/api/no-such-endpoint/")
    assert unknown.status_code == 404
    assert unknown["Content-Type"] == "application/json"
    assert unknown.json() == {"error": "not_found", "detail": "Not found."}
    # an endpoint's own 404 and 403 are unchanged
    other = services.project_create(name="Other", created_by=people["admin"], overlap=1)
    foreign = client.get(f"/api/projects/{other.pk}/")
    assert foreign.status_code == 404
    assert foreign.content == unknown.content  # byte for byte
    refused = client.patch(
        f"/api/projects/{people['project'].pk}/", {"overlap": 9}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "permission_denied",
        "detail": "You do not have permission to perform this action.",
    }


def test_a_permission_refused_outside_an_endpoint_under_api_is_the_same_json(debug_off, people, rf):
    from django.core.exceptions import PermissionDenied

    from config.error_views import permission_denied

    # given an endpoint's refusal
    client = _client(people["annotator"])
    refused = client.patch(
        f"/api/projects/{people['project'].pk}/", {"overlap": 9}, content_type="application/json"
    )
    # when a 403 is raised under /api/ by something other than an endpoint (a middleware, say)
    response = permission_denied(rf.get("/api/projects/1/"), PermissionDenied())
    # then it answers the same JSON, byte for byte
    assert response.status_code == refused.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.content == refused.content


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_404_and_403_pages_pass_axe_and_lead_home(debug_off, page, login):
    from .axe import assert_no_serious_axe_violations

    users = get_user_model().objects
    admin = users.create_user("ada-admin", password="pw")
    users.create_user("ann", password="ann-pass-123")
    project = services.project_create(name="Helpfulness", created_by=admin, overlap=1)
    services.membership_set(project=project, user=users.get(username="ann"), role=Role.ANNOTATOR)
    login("ann", "ann-pass-123")
    for address, status in (("/no-such-page/", 404), (f"/projects/{project.pk}/manage/", 403)):
        response = page.goto(address)
        assert response.status == status
        assert_no_serious_axe_violations(page, f"the {status} page")
        page.click("main a.button.primary")
        page.wait_for_url("**/")
        assert page.locator("h1").inner_text() == "Your projects"
