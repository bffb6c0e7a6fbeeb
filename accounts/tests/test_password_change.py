"""Changing one's own password (POST /api/users/me/password/): every other session ends, the caller's goes on."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

CHANGE = "/api/users/me/password/"
ME = "/api/users/me/"
NEW_PASSWORD = "an-entirely-new-passphrase"


def change(client, current: str = PASSWORD, new: str = NEW_PASSWORD, confirm: str | None = None, **extra):
    data = {
        "current_password": current,
        "new_password": new,
        "new_password_confirm": new if confirm is None else confirm,
    }
    return client.post(CHANGE, data, format="json", **extra)


def bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def can_log_in(username: str, password: str) -> bool:
    response = APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")
    return response.status_code == 200


@pytest.fixture
def other_session(bidder):
    """The user's session on another device: its refresh token and access token."""
    refresh = RefreshToken.for_user(bidder)
    return {"refresh": str(refresh), "access": str(refresh.access_token)}


@pytest.fixture
def cookie_browser(bidder):
    """A browser logged in through the cookie endpoints, held to the CSRF checks."""
    browser = APIClient(enforce_csrf_checks=True)
    csrf = browser.get("/api/auth/csrf/").json()["csrf_token"]
    response = browser.post(
        "/api/auth/cookie/login/", {"username": "alice", "password": PASSWORD}, format="json", HTTP_X_CSRFTOKEN=csrf
    )
    assert response.status_code == 200
    browser.csrf = csrf
    return browser


def test_a_bearer_client_gets_a_new_session_and_every_other_one_ends(bidder, other_session):
    client = bearer(other_session["access"])
    epoch = bidder.session_epoch

    response = change(client)

    assert response.status_code == 200, response.content
    tokens = response.json()
    assert bearer(tokens["access"]).get(ME).json()["username"] == "alice"
    assert (
        APIClient().post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json").status_code == 200
    )
    # The old session: its refresh token is blacklisted, its access token carries the old password's hash.
    old_jti = RefreshToken(other_session["refresh"], verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=old_jti).exists()
    assert bearer(other_session["access"]).get(ME).status_code == 401
    # Its sockets close: the same end of sessions as a log-out.
    bidder.refresh_from_db()
    assert bidder.session_epoch == epoch + 1
    assert can_log_in("alice", NEW_PASSWORD)
    assert not can_log_in("alice", PASSWORD)


def test_the_page_that_changes_it_gets_new_cookies_and_stays_logged_in(cookie_browser, other_session):
    old_refresh = cookie_browser.cookies[settings.JWT_REFRESH_COOKIE].value

    response = change(cookie_browser, HTTP_X_CSRFTOKEN=cookie_browser.csrf)

    assert response.status_code == 200, response.content
    # The tokens stay out of the scripts' reach: in HttpOnly cookies only.
    assert response.json() == {"detail": "Your password has been changed."}
    access, refresh = response.cookies[settings.JWT_ACCESS_COOKIE], response.cookies[settings.JWT_REFRESH_COOKIE]
    assert access["httponly"] and refresh["httponly"]
    assert refresh["path"] == "/api/auth/cookie/"
    assert refresh.value != old_refresh
    assert cookie_browser.get(ME).json()["username"] == "alice"
    refreshed = cookie_browser.post("/api/auth/cookie/refresh/", HTTP_X_CSRFTOKEN=cookie_browser.csrf)
    assert refreshed.status_code == 200
    old_jti = RefreshToken(old_refresh, verify=False)["jti"]
    assert BlacklistedToken.objects.filter(token__jti=old_jti).exists()
    assert bearer(other_session["access"]).get(ME).status_code == 401


def test_a_cookie_request_needs_csrf(cookie_browser):
    response = change(cookie_browser)

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert can_log_in("alice", PASSWORD)


def test_a_wrong_current_password_is_refused(bidder, other_session):
    response = change(bearer(other_session["access"]), current="not-my-password")

    assert response.status_code == 400
    assert response.json()["code"] == "wrong_password"
    assert can_log_in("alice", PASSWORD)
    assert bearer(other_session["access"]).get(ME).status_code == 200


@pytest.mark.parametrize(
    ("new", "confirm", "code", "field"),
    [
        ("12345678", None, "weak_password", "new_password"),
        ("alice@example.com", None, "weak_password", "new_password"),  # too like the user's own e-mail
        (NEW_PASSWORD, "something-else-entirely", "password_mismatch", "new_password_confirm"),
    ],
)
def test_a_new_password_that_will_not_do_is_refused_next_to_its_field(other_session, new, confirm, code, field):
    response = change(bearer(other_session["access"]), new=new, confirm=confirm)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert body["errors"][field]
    assert can_log_in("alice", PASSWORD)


def test_a_visitor_is_refused(bidder):
    response = change(APIClient())

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_guesses_of_the_current_password_count_as_log_in_attempts_on_the_account(settings, bidder, other_session):
    settings.THROTTLE_AUTH = "1000/minute"
    settings.THROTTLE_LOGIN_ACCOUNT = "2/15m"
    client = bearer(other_session["access"])
    assert change(client, current="guess-1").json()["code"] == "wrong_password"
    assert change(client, current="guess-2").json()["code"] == "wrong_password"

    # Refused before the password is checked: the right one too.
    response = change(client)

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    bidder.refresh_from_db()
    assert bidder.check_password(PASSWORD)
    # The log-ins share the account's allowance.
    login = APIClient().post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert login.status_code == 429
