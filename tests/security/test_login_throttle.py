"""Login throttling, on the login page and /api/auth/token/, exact under concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from config.errors import TooManyAttempts
from frontend.models import LoginThrottle

LIMIT = 5


@pytest.fixture
def limits(settings):
    settings.TANDEM_LOGIN_MAX_FAILURES_PER_USER = LIMIT
    settings.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 50
    settings.TANDEM_LOGIN_WINDOW_SECONDS = 900
    return settings


@pytest.fixture
def victim(db):
    return get_user_model().objects.create_user("victim", password="correct-horse")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_get_exactly_the_limit_of_password_checks(limits, victim):
    """30 guesses at once: exactly LIMIT reach the password check, the rest are refused."""
    attempts = 30
    barrier = threading.Barrier(attempts)
    outcomes: list[str] = []
    lock = threading.Lock()

    def guess(i: int):
        request = RequestFactory().post("/login/", REMOTE_ADDR=f"10.0.{i}.1")
        barrier.wait()
        try:
            result = authenticate(request, username="victim", password=f"guess-{i}")
            outcome = "checked" if result is None else "in"
        except TooManyAttempts:
            outcome = "throttled"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("checked") == LIMIT
    assert outcomes.count("throttled") == attempts - LIMIT
    # Locked: even the right password is refused until the window ends.
    with pytest.raises(TooManyAttempts):
        authenticate(RequestFactory().post("/"), username="victim", password="correct-horse")


def test_the_login_page_answers_429_with_a_clear_message(limits, victim):
    client = Client()
    for _ in range(LIMIT):
        response = client.post("/login/", {"username": "victim", "password": "wrong"})
        assert response.status_code == 200
        assert b"didn&#x27;t match" in response.content or b"didn't match" in response.content
    response = client.post("/login/", {"username": "victim", "password": "correct-horse"})
    assert response.status_code == 429
    assert b"Too many login attempts" in response.content
    assert response["Retry-After"] == "900"
    assert "_auth_user_id" not in client.session


def test_the_api_token_endpoint_answers_429_too(limits, victim):
    client = Client()
    for _ in range(LIMIT):
        response = client.post("/api/auth/token/", {"username": "victim", "password": "wrong"})
        assert response.status_code == 400
    response = client.post("/api/auth/token/", {"username": "victim", "password": "correct-horse"})
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_attempts"
    assert response["Retry-After"] == "900"


def test_the_admin_login_is_throttled_as_well(limits, victim):
    client = Client()
    for _ in range(LIMIT):
        client.post("/admin/login/", {"username": "victim", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "victim", "password": "wrong"})
    assert response.status_code == 429


def test_a_correct_password_clears_the_account_counter(limits, victim):
    client = Client()
    for _ in range(LIMIT - 1):
        client.post("/api/auth/token/", {"username": "victim", "password": "wrong"})
    ok = client.post("/api/auth/token/", {"username": "victim", "password": "correct-horse"})
    assert ok.status_code == 200
    for _ in range(LIMIT - 1):
        response = client.post("/api/auth/token/", {"username": "victim", "password": "wrong"})
        assert response.status_code == 400


def test_spraying_many_accounts_from_one_address_is_throttled(limits, victim):
    limits.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    client = Client()
    statuses = [
        client.post("/api/auth/token/", {"username": f"user{i}", "password": "x"}).status_code
        for i in range(10)
    ]
    assert statuses == [400] * 8 + [429] * 2


def test_the_window_expires(limits, victim):
    client = Client()
    for _ in range(LIMIT + 1):
        client.post("/api/auth/token/", {"username": "victim", "password": "wrong"})
    LoginThrottle.objects.update(window_start=timezone.now() - timedelta(seconds=901))
    ok = client.post("/api/auth/token/", {"username": "victim", "password": "correct-horse"})
    assert ok.status_code == 200


def test_typed_user_names_are_not_stored(limits, victim):
    Client().post("/login/", {"username": "my-password-by-mistake", "password": "x"})
    keys = list(LoginThrottle.objects.values_list("key", flat=True))
    assert keys
    assert all(len(k) == 64 and "password" not in k for k in keys)


# Behind a reverse proxy every request arrives from the proxy's address. Without trusting
# it, 100 failures from anyone lock everybody out; trusting X-Forwarded-For blindly lets a
# client pick its own address. TANDEM_TRUSTED_PROXIES names the proxies whose header counts.


def _spray(client, forwarded_for, count: int, proxy="10.0.0.2") -> list[int]:
    """``count`` failed logins through ``proxy``; ``forwarded_for`` is the header's value, or
    a function of the attempt's number."""
    header = forwarded_for if callable(forwarded_for) else (lambda i: forwarded_for)
    return [
        client.post(
            "/api/auth/token/",
            {"username": f"someone{i}", "password": "x"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=header(i),
        ).status_code
        for i in range(count)
    ]


def test_behind_a_trusted_proxy_each_client_address_is_counted_on_its_own(limits, victim):
    # given a proxy at 10.0.0.2 the settings trust, and an address limit of 8
    limits.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    limits.TANDEM_TRUSTED_PROXIES = ["10.0.0.0/24", "192.168.1.1"]
    client = Client()
    # when one client behind it sprays passwords until it is throttled
    assert _spray(client, "203.0.113.7", 9) == [400] * 8 + [429]
    # then another client behind the same proxy can still log in
    ok = client.post(
        "/api/auth/token/",
        {"username": "victim", "password": "correct-horse"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="198.51.100.20",
    )
    assert ok.status_code == 200


def test_the_client_cannot_choose_its_address_through_a_trusted_proxy(limits, victim):
    # given a chain of two trusted proxies that each append the address they saw
    limits.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    limits.TANDEM_TRUSTED_PROXIES = ["10.0.0.0/24", "192.168.1.1"]
    client = Client()
    # when the client forges a different left-most entry on every attempt
    statuses = _spray(client, lambda i: f"1.2.3.{i}, 203.0.113.7, 192.168.1.1", 9)
    # then it is counted under the right-most address no trusted proxy holds
    assert statuses == [400] * 8 + [429]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(limits, victim):
    limits.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    limits.TANDEM_TRUSTED_PROXIES = []
    statuses = _spray(Client(), lambda i: f"203.0.113.{i}", 9)
    assert statuses == [400] * 8 + [429]


def test_a_request_not_from_a_trusted_proxy_is_counted_under_its_own_address(limits, victim):
    limits.TANDEM_LOGIN_MAX_FAILURES_PER_ADDRESS = 8
    limits.TANDEM_TRUSTED_PROXIES = ["10.0.0.0/24"]
    client = Client()
    statuses = _spray(client, "203.0.113.7", 4, proxy="198.51.100.9")
    statuses += _spray(client, "203.0.113.8", 5, proxy="198.51.100.9")
    assert statuses == [400] * 8 + [429]
