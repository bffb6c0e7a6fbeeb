"""Throttles of the ways in (issue #15, item 3): every log-in, per client address and per account.

`THROTTLE_AUTH` counts log-ins (REST token, cookie log-in, the admin's and the
browsable API's forms) and registrations per client address; `THROTTLE_LOGIN_ACCOUNT`
counts log-ins per account named, from any address; `THROTTLE_PASSWORD_RESET`
counts reset requests per address and per e-mail address. The clock of the
limits is replaced, so windows neither straddle a boundary nor need waiting out.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client

from conftest import PASSWORD
from ops import ratelimit
from testsupport.live_servers import database_url_for_tests, live_server_processes, request
from testsupport.servers import clear_of_window_end

pytestmark = pytest.mark.django_db

TOKEN = "/api/auth/token/"
COOKIE_LOGIN = "/api/auth/cookie/login/"
RESET = "/api/auth/password-reset/"
HTML_LOGINS = ["/admin/login/", "/api-auth/login/"]
START = 1_800_000_000.0  # A whole number of minutes, quarters and hours.


@pytest.fixture
def clock(monkeypatch):
    now = [START]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    return now


@pytest.fixture
def loose(settings):
    """Every limit high; each test lowers the one it is about."""
    settings.THROTTLE_AUTH = settings.THROTTLE_LOGIN_ACCOUNT = settings.THROTTLE_PASSWORD_RESET = "1000/minute"
    return settings


def log_in(client, username: str, password: str = "wrong-password", *, address: str = "10.0.0.1", path: str = TOKEN):
    return client.post(path, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


def assert_throttled(response, *, longest: int) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= longest


@pytest.mark.parametrize("path", [TOKEN, COOKIE_LOGIN])
def test_the_attempt_after_the_limit_from_one_address_is_refused(api_client, loose, clock, bidder, path):
    loose.THROTTLE_AUTH = "3/minute"
    clock[0] += 20

    # Different accounts each time: only the address's allowance runs out.
    assert [log_in(api_client, f"guess{n}", path=path).status_code for n in range(3)] == [401] * 3

    assert_throttled(log_in(api_client, "guess3", path=path), longest=40)
    assert_throttled(log_in(api_client, bidder.username, PASSWORD, path=path), longest=40)
    assert log_in(api_client, bidder.username, PASSWORD, address="10.0.0.2", path=path).status_code == 200


def test_one_accounts_allowance_is_shared_by_every_address_and_both_of_its_names(api_client, loose, clock, bidder):
    loose.THROTTLE_LOGIN_ACCOUNT = "4/15m"
    names = [bidder.username, bidder.email.upper(), bidder.username, bidder.email]

    replies = [log_in(api_client, name, address=f"10.0.1.{n}") for n, name in enumerate(names)]

    assert [r.status_code for r in replies] == [401] * 4
    assert_throttled(log_in(api_client, bidder.email, address="10.0.2.1"), longest=900)
    # Another account from the same addresses is not locked.
    assert log_in(api_client, "somebody-else", address="10.0.1.0").status_code == 401


def test_the_right_password_is_refused_while_the_account_is_locked(api_client, loose, clock, bidder):
    loose.THROTTLE_LOGIN_ACCOUNT = "2/hour"
    for n in range(2):
        log_in(api_client, bidder.username, address=f"10.0.3.{n}")

    response = log_in(api_client, bidder.username, PASSWORD, address="10.0.4.1")

    assert_throttled(response, longest=3600)
    assert "access" not in response.json()


def test_the_lock_ends_with_its_window(api_client, loose, clock, bidder):
    loose.THROTTLE_LOGIN_ACCOUNT = "2/15m"
    for _ in range(2):
        log_in(api_client, bidder.username)
    locked = log_in(api_client, bidder.username, PASSWORD)
    assert_throttled(locked, longest=900)

    clock[0] += int(locked["Retry-After"])

    assert log_in(api_client, bidder.username, PASSWORD).status_code == 200


def test_registrations_count_against_the_addresss_log_in_allowance(api_client, loose, clock):
    loose.THROTTLE_AUTH = "2/minute"
    log_in(api_client, "guess")
    register = {"username": "rae", "email": "rae@example.com", "password": PASSWORD, "password_confirm": PASSWORD}
    assert api_client.post("/api/auth/register/", register, format="json", REMOTE_ADDR="10.0.0.1").status_code == 201

    assert_throttled(log_in(api_client, "rae", PASSWORD), longest=60)


def test_a_forwarded_for_header_does_not_choose_the_address(api_client, loose, clock):
    loose.THROTTLE_AUTH = "2/minute"
    replies = [
        api_client.post(TOKEN, {"username": "x", "password": "y"}, format="json", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
        for n in range(3)
    ]

    assert [r.status_code for r in replies] == [401, 401, 429]


@pytest.mark.parametrize("path", HTML_LOGINS)
def test_the_html_login_forms_answer_a_429_page(loose, clock, staff_user, path):
    loose.THROTTLE_AUTH = "2/minute"
    browser = Client()

    wrong = [browser.post(path, {"username": staff_user.username, "password": "nope"}) for _ in range(2)]
    refused = browser.post(path, {"username": staff_user.username, "password": PASSWORD})

    assert [r.status_code for r in wrong] == [200, 200]  # The form again, with its error.
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Content-Type"].startswith("text/html")
    assert b"Too many log-in attempts" in refused.content
    assert "_auth_user_id" not in browser.session
    # Reading the form is not an attempt.
    assert browser.get(path).status_code == 200


@pytest.mark.parametrize("path", HTML_LOGINS)
def test_an_html_login_form_counts_per_account_too(loose, clock, staff_user, path):
    loose.THROTTLE_LOGIN_ACCOUNT = "1/minute"
    browser = Client()
    browser.post(path, {"username": staff_user.username, "password": "nope"}, REMOTE_ADDR="10.0.5.1")

    refused = browser.post(path, {"username": staff_user.username, "password": PASSWORD}, REMOTE_ADDR="10.0.5.2")

    assert refused.status_code == 429


def test_an_html_login_form_answers_503_while_redis_is_away(loose, staff_user):
    loose.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = Client().post("/admin/login/", {"username": staff_user.username, "password": PASSWORD})

    assert response.status_code == 503
    assert response["Retry-After"] == "2"


def test_rest_log_in_answers_503_while_redis_is_away(api_client, loose, bidder):
    loose.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = log_in(api_client, bidder.username, PASSWORD)

    assert (response.status_code, response.json()["code"]) == (503, "service_unavailable")


def test_reset_requests_for_one_address_are_limited_across_client_addresses(
    api_client, loose, clock, bidder, mailoutbox
):
    loose.THROTTLE_PASSWORD_RESET = "2/hour"
    replies = [
        api_client.post(RESET, {"email": email}, format="json", REMOTE_ADDR=f"10.0.6.{n}")
        for n, email in enumerate([bidder.email, bidder.email.upper(), bidder.email])
    ]

    assert [r.status_code for r in replies][:2] == [200, 200]
    assert_throttled(replies[2], longest=3600)
    assert len(mailoutbox) == 2


def test_the_shipped_rates_parse():
    for rate in (settings.THROTTLE_AUTH, settings.THROTTLE_LOGIN_ACCOUNT, settings.THROTTLE_PASSWORD_RESET):
        limit, window = ratelimit.parse_rate(rate)
        assert limit > 0 and window > 0
    assert ratelimit.parse_rate("10/15m") == (10, 900)
    assert ratelimit.parse_rate("30/minute") == (30, 60)


# --- Across real processes (PostgreSQL + Redis) ------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_one_accounts_attempts_to_two_processes_are_limited_once(bidder):
    limit, attempts = 5, 20
    env = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "THROTTLE_AUTH": "1000/minute",
        "THROTTLE_LOGIN_ACCOUNT": f"{limit}/hour",
    }
    with live_server_processes(2, env=env) as servers:
        clear_of_window_end(window=3600, margin=60)
        start = threading.Barrier(attempts)

        def attempt(n: int) -> int:
            start.wait()
            body = {"username": bidder.username, "password": f"guess-{n}"}
            return request("POST", f"{servers[n % 2].url}{TOKEN}", data=body)[0]

        with ThreadPoolExecutor(attempts) as pool:
            statuses = list(pool.map(attempt, range(attempts)))
        right_password = request("POST", f"{servers[0].url}{TOKEN}", data={"username": "alice", "password": PASSWORD})

    assert sorted(statuses) == [401] * limit + [429] * (attempts - limit)
    assert right_password[0] == 429
