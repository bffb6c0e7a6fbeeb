"""Tokens in HttpOnly cookies for browser front ends, guarded by Django's CSRF checks."""

from datetime import timedelta

import pytest
from django.conf import settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

CSRF = "/api/auth/csrf/"
LOGIN = "/api/auth/cookie/login/"
REFRESH = "/api/auth/cookie/refresh/"
LOGOUT = "/api/auth/cookie/logout/"
ME = "/api/users/me/"

ACCESS_COOKIE = settings.JWT_ACCESS_COOKIE
REFRESH_COOKIE = settings.JWT_REFRESH_COOKIE
HINT_COOKIE = settings.JWT_HINT_COOKIE


def csrf_token(browser) -> str:
    response = browser.get(CSRF)
    assert response.status_code == 200
    return response.json()["csrf_token"]


def log_in(browser, username: str = "alice", password: str = PASSWORD, **extra):
    return browser.post(
        LOGIN,
        {"username": username, "password": password},
        format="json",
        HTTP_X_CSRFTOKEN=csrf_token(browser),
        **extra,
    )


@pytest.fixture
def logged_in(browser, bidder):
    assert log_in(browser).status_code == 200
    return browser


def jti(raw: str) -> str:
    return RefreshToken(raw, verify=False)["jti"]


# --- CSRF cookie -------------------------------------------------------------------


def test_csrf_sets_the_cookie(browser):
    response = browser.get(CSRF)

    assert response.status_code == 200
    assert response.json()["csrf_token"]
    assert response.cookies[settings.CSRF_COOKIE_NAME].value


# --- Login ---------------------------------------------------------------------------


def test_login_sets_httponly_cookies_and_returns_the_user(browser, bidder):
    response = log_in(browser)

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert not {"access", "refresh"} & response.json().keys()
    access, refresh = response.cookies[ACCESS_COOKIE], response.cookies[REFRESH_COOKIE]
    assert AccessToken(access.value)["user_id"] == str(bidder.pk)
    assert RefreshToken(refresh.value)["user_id"] == str(bidder.pk)
    for cookie in (access, refresh):
        assert cookie["httponly"]
        assert cookie["samesite"] == settings.JWT_COOKIE_SAMESITE
    assert access["path"] == "/"
    assert access["max-age"] == int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds())
    # The refresh token only travels to the cookie endpoints.
    assert refresh["path"] == "/api/auth/cookie/"
    assert refresh["max-age"] == int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds())


def test_login_sets_a_readable_hint_that_lives_as_long_as_the_refresh_token(browser, bidder):
    hint = log_in(browser).cookies[HINT_COOKIE]

    # The pages' scripts read it (static/js/api.js): it holds no secret.
    assert hint.value == "1"
    assert not hint["httponly"]
    assert hint["path"] == "/"
    assert hint["samesite"] == settings.JWT_COOKIE_SAMESITE
    assert hint["max-age"] == int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds())


def test_login_with_email(browser, bidder):
    response = log_in(browser, "ALICE@example.com")

    assert response.status_code == 200
    assert response.json()["id"] == bidder.pk


def test_login_needs_csrf(browser, bidder):
    browser.get(CSRF)  # the cookie alone is not enough: the header must echo it

    response = browser.post(LOGIN, {"username": "alice", "password": PASSWORD}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert ACCESS_COOKIE not in response.cookies


def test_login_refuses_a_foreign_origin(browser, bidder):
    response = log_in(browser, HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert ACCESS_COOKIE not in response.cookies


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_login_wrong_password(browser, bidder, username):
    response = log_in(browser, username, "not-the-password")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"
    assert ACCESS_COOKIE not in response.cookies
    assert REFRESH_COOKIE not in response.cookies


def test_login_missing_password(browser, bidder):
    response = browser.post(LOGIN, {"username": "alice"}, format="json", HTTP_X_CSRFTOKEN=csrf_token(browser))

    assert response.status_code == 400
    assert response.json()["code"] == "required"


# --- The access cookie authenticates the API ---------------------------------------


def test_cookie_authenticates_safe_requests_without_csrf(logged_in):
    response = logged_in.get(ME)

    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_cookie_authenticated_unsafe_requests_need_csrf(logged_in, bidder):
    response = logged_in.patch(ME, {"first_name": "Mallory"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    bidder.refresh_from_db()
    assert bidder.first_name == ""

    response = logged_in.patch(ME, {"first_name": "Alice"}, format="json", HTTP_X_CSRFTOKEN=csrf_token(logged_in))

    assert response.status_code == 200
    bidder.refresh_from_db()
    assert bidder.first_name == "Alice"


def test_cookie_ws_ticket_needs_csrf(logged_in):
    assert logged_in.post("/api/auth/ws-ticket/").status_code == 403

    response = logged_in.post("/api/auth/ws-ticket/", HTTP_X_CSRFTOKEN=csrf_token(logged_in))

    assert response.status_code == 201
    assert response.json()["ticket"]


def test_expired_access_cookie(browser, bidder):
    token = AccessToken.for_user(bidder)
    token.set_exp(lifetime=-timedelta(seconds=1))
    browser.cookies[ACCESS_COOKIE] = str(token)

    response = browser.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_bearer_header_needs_no_csrf(client_for, bidder):
    client = client_for(bidder)
    client.handler.enforce_csrf_checks = True

    assert client.patch(ME, {"first_name": "Alice"}, format="json").status_code == 200


# --- Refresh -------------------------------------------------------------------------


def test_refresh_rotates_the_cookies(logged_in, bidder):
    old_refresh = logged_in.cookies[REFRESH_COOKIE].value
    old_access = logged_in.cookies[ACCESS_COOKIE].value

    response = logged_in.post(REFRESH, HTTP_X_CSRFTOKEN=csrf_token(logged_in))

    assert response.status_code == 200
    new_refresh = response.cookies[REFRESH_COOKIE]
    assert new_refresh.value != old_refresh
    assert new_refresh["httponly"]
    assert new_refresh["path"] == "/api/auth/cookie/"
    assert response.cookies[ACCESS_COOKIE].value != old_access
    assert AccessToken(response.cookies[ACCESS_COOKIE].value)["user_id"] == str(bidder.pk)
    assert BlacklistedToken.objects.filter(token__jti=jti(old_refresh)).exists()
    # The rotated refresh token lives on: so does the hint.
    assert response.cookies[HINT_COOKIE]["max-age"] == int(
        settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds()
    )


def test_refresh_with_a_reused_cookie(logged_in):
    old_refresh = logged_in.cookies[REFRESH_COOKIE].value
    token = csrf_token(logged_in)
    assert logged_in.post(REFRESH, HTTP_X_CSRFTOKEN=token).status_code == 200
    logged_in.cookies[REFRESH_COOKIE] = old_refresh

    response = logged_in.post(REFRESH, HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_refresh_with_an_expired_cookie(browser, bidder):
    token = RefreshToken.for_user(bidder)
    token.set_exp(lifetime=-timedelta(seconds=1))
    browser.cookies[REFRESH_COOKIE] = str(token)

    response = browser.post(REFRESH, HTTP_X_CSRFTOKEN=csrf_token(browser))

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_refresh_without_a_cookie(browser):
    response = browser.post(REFRESH, HTTP_X_CSRFTOKEN=csrf_token(browser))

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_refresh_needs_csrf(logged_in):
    old_refresh = logged_in.cookies[REFRESH_COOKIE].value

    response = logged_in.post(REFRESH)

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not BlacklistedToken.objects.filter(token__jti=jti(old_refresh)).exists()


# --- Logout --------------------------------------------------------------------------


def test_logout_clears_the_cookies_and_blacklists_the_refresh_token(logged_in):
    refresh = logged_in.cookies[REFRESH_COOKIE].value

    response = logged_in.post(LOGOUT, HTTP_X_CSRFTOKEN=csrf_token(logged_in))

    assert response.status_code == 200
    for name, path in ((ACCESS_COOKIE, "/"), (REFRESH_COOKIE, "/api/auth/cookie/"), (HINT_COOKIE, "/")):
        assert response.cookies[name].value == ""
        assert response.cookies[name]["max-age"] == 0
        assert response.cookies[name]["path"] == path
    assert BlacklistedToken.objects.filter(token__jti=jti(refresh)).exists()
    assert logged_in.get(ME).status_code == 401


@pytest.mark.parametrize("cookie", [None, "garbage"])
def test_logout_without_a_valid_cookie_still_clears(browser, cookie):
    if cookie:
        browser.cookies[REFRESH_COOKIE] = cookie

    response = browser.post(LOGOUT, HTTP_X_CSRFTOKEN=csrf_token(browser))

    assert response.status_code == 200
    assert response.cookies[ACCESS_COOKIE]["max-age"] == 0
    assert response.cookies[HINT_COOKIE]["max-age"] == 0


def test_logout_needs_csrf(logged_in):
    refresh = logged_in.cookies[REFRESH_COOKIE].value

    response = logged_in.post(LOGOUT)

    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert not BlacklistedToken.objects.filter(token__jti=jti(refresh)).exists()
