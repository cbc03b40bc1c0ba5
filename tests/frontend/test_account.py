"""The account page: a user lists, creates and revokes their own API tokens, without script."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from annotation import services
from annotation.tokens import ApiToken

User = get_user_model()


@pytest.fixture
def signed_in(db):
    user = User.objects.create_user("tokenholder", password="pw-tokenholder-1")
    client = Client()
    client.force_login(user)
    return user, client


def test_the_home_page_links_to_the_account_page(signed_in):
    _, client = signed_in
    assert 'href="/account/"' in client.get("/").content.decode()


def test_a_token_created_on_the_page_is_shown_once_and_works(signed_in):
    user, client = signed_in
    response = client.post(
        "/account/",
        {"action": "create-token", "name": "laptop", "scope": "read", "expires_in_days": "7"},
    )
    page = response.content.decode()
    secret = re.search(r'data-testid="issued-secret">([^<]+)<', page).group(1)
    token = ApiToken.objects.get(user=user)
    assert (token.name, token.scope) == ("laptop", "read")
    assert 6 <= (token.expires_at - token.created_at).days <= 7

    again = client.get("/account/").content.decode()
    assert secret not in again
    assert token.prefix in again
    api = Client(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/me/").json()["username"] == "tokenholder"


def test_revoking_on_the_page_ends_the_token_and_others_tokens_are_out_of_reach(signed_in):
    user, client = signed_in
    own = services.api_token_create(user=user, name="mine", scope="read")
    other_user = User.objects.create_user("someone-else", password="pw-else-1")
    other = services.api_token_create(user=other_user, name="theirs", scope="read")
    assert "theirs" not in client.get("/account/").content.decode()

    client.post("/account/", {"action": "revoke-token", "token_id": str(other.token.pk)})
    client.post("/account/", {"action": "revoke-token", "token_id": str(own.token.pk)})

    other.token.refresh_from_db()
    own.token.refresh_from_db()
    assert other.token.revoked_at is None
    assert own.token.revoked_at is not None
    assert Client(HTTP_AUTHORIZATION=f"Token {own.secret}").get("/api/me/").status_code == 403


def test_the_account_page_has_no_inline_script(signed_in):
    _, client = signed_in
    page = client.get("/account/").content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert not re.search(r"\son[a-z]+=", page)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_person_creates_and_revokes_a_token_in_the_browser(page, login):
    User.objects.create_user("browser-holder", password="pw-browser-holder-1")
    login("browser-holder", "pw-browser-holder-1")
    page.get_by_test_id("account-link").click()
    page.fill("input[name=name]", "ci")
    page.select_option("select[name=scope]", "annotate")
    page.click("form[data-testid=new-token] button[type=submit]")
    secret = page.get_by_test_id("issued-secret").inner_text()
    assert secret.startswith("tdm_")
    token = ApiToken.objects.get(name="ci")
    page.goto("/account/")
    page.get_by_test_id(f"revoke-{token.pk}").click()
    expect(page.get_by_test_id(f"token-{token.pk}")).to_contain_text("revoked")
    assert page.watch.console_errors == []
    assert page.watch.page_errors == []
