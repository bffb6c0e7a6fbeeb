"""Password reset: the request e-mails a one-time link; the confirmation sets the password."""

import re
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework_simplejwt.tokens import RefreshToken

from conftest import PASSWORD
from ops.ratelimit import parse_rate

pytestmark = pytest.mark.django_db

REQUEST = "/api/auth/password-reset/"
CONFIRM = "/api/auth/password-reset/confirm/"
NEW_PASSWORD = "an-entirely-new-passphrase"


def request_reset(client, email: str):
    return client.post(REQUEST, {"email": email}, format="json")


def link_from(mail) -> dict:
    match = re.search(r"/reset-password/\?uid=([\w-]+)&token=([\w-]+)", mail.body)
    assert match, mail.body
    return {"uid": match[1], "token": match[2]}


def confirmation(link: dict, password: str = NEW_PASSWORD, confirm: str | None = None) -> dict:
    return {**link, "new_password": password, "new_password_confirm": password if confirm is None else confirm}


def can_log_in(client, username: str, password: str) -> bool:
    return (
        client.post("/api/auth/token/", {"username": username, "password": password}, format="json").status_code == 200
    )


@pytest.fixture
def reset_link(api_client, bidder, mailoutbox):
    assert request_reset(api_client, bidder.email).status_code == 200
    return link_from(mailoutbox[-1])


# --- Requesting a reset ---------------------------------------------------------


def test_request_emails_a_one_time_link(api_client, bidder, mailoutbox, settings):
    settings.FRONTEND_URL = "https://auctions.example/"

    response = request_reset(api_client, "Alice@EXAMPLE.com")

    assert response.status_code == 200
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@example.com"]
    assert mail.subject == "Reset your password"
    link = link_from(mail)
    assert f"https://auctions.example/reset-password/?uid={link['uid']}&token={link['token']}" in mail.body
    assert default_token_generator.check_token(bidder, link["token"])
    html, mimetype = mail.alternatives[0]
    assert mimetype == "text/html"
    assert f'href="https://auctions.example/reset-password/?uid={link["uid"]}&amp;token={link["token"]}"' in html


@pytest.mark.parametrize("case", ["unknown", "inactive", "unusable-password"])
def test_request_answers_the_same_whether_or_not_the_address_has_an_account(
    api_client, bidder, make_user, mailoutbox, case
):
    known = request_reset(api_client, bidder.email)
    mailoutbox.clear()
    if case == "inactive":
        email = make_user("dormant", is_active=False).email
    elif case == "unusable-password":
        user = make_user("sso_only")
        user.set_unusable_password()
        user.save()
        email = user.email
    else:
        email = "nobody@example.com"

    response = request_reset(api_client, email)

    assert (response.status_code, response.json()) == (known.status_code, known.json())
    assert mailoutbox == []


@pytest.mark.parametrize(("body", "code"), [({}, "required"), ({"email": "not-an-address"}, "invalid")])
def test_request_bad_input(api_client, mailoutbox, body, code):
    response = api_client.post(REQUEST, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert "email" in response.json()["errors"]
    assert mailoutbox == []


def test_request_is_throttled(api_client, bidder, mailoutbox):
    allowed, _ = parse_rate(settings.THROTTLE_PASSWORD_RESET)
    for n in range(allowed):
        assert request_reset(api_client, f"nobody{n}@example.com").status_code == 200

    response = request_reset(api_client, bidder.email)

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert mailoutbox == []


# --- Confirming -------------------------------------------------------------------


def test_confirm_sets_the_new_password(api_client, bidder, reset_link):
    response = api_client.post(CONFIRM, confirmation(reset_link), format="json")

    assert response.status_code == 200
    assert not can_log_in(api_client, "alice", PASSWORD)
    assert can_log_in(api_client, "alice", NEW_PASSWORD)


def test_confirm_link_works_only_once(api_client, bidder, reset_link):
    assert api_client.post(CONFIRM, confirmation(reset_link), format="json").status_code == 200

    response = api_client.post(CONFIRM, confirmation(reset_link, "yet-another-passphrase-42"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_reset_token"
    assert can_log_in(api_client, "alice", NEW_PASSWORD)


def test_confirm_logs_out_every_refresh_token(api_client, bidder, reset_link):
    sessions = [str(RefreshToken.for_user(bidder)) for _ in range(2)]

    assert api_client.post(CONFIRM, confirmation(reset_link), format="json").status_code == 200

    for refresh in sessions:
        response = api_client.post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"


def test_confirm_ends_sessions_holding_an_access_token(api_client, client_for, bidder, reset_link):
    session = client_for(bidder)
    assert session.get("/api/users/me/").status_code == 200

    assert api_client.post(CONFIRM, confirmation(reset_link), format="json").status_code == 200

    response = session.get("/api/users/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "password_changed"


def test_confirm_expired_link(api_client, bidder, monkeypatch, settings):
    issued_at = datetime.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(default_token_generator, "_now", lambda: issued_at)
    link = {"uid": urlsafe_base64_encode(force_bytes(bidder.pk)), "token": default_token_generator.make_token(bidder)}
    monkeypatch.undo()

    response = api_client.post(CONFIRM, confirmation(link), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_reset_token"
    assert can_log_in(api_client, "alice", PASSWORD)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda link, other: {**link, "token": link["token"][:-1] + "x"}, id="wrong-token"),
        pytest.param(lambda link, other: {**link, "uid": other}, id="another-users-uid"),
        pytest.param(lambda link, other: {**link, "uid": "!!not-base64!!"}, id="garbage-uid"),
        pytest.param(lambda link, other: {**link, "uid": urlsafe_base64_encode(b"999999")}, id="unknown-uid"),
        pytest.param(lambda link, other: {**link, "uid": urlsafe_base64_encode(b"abc")}, id="non-numeric-uid"),
        pytest.param(lambda link, other: {**link, "uid": urlsafe_base64_encode(b"9" * 30)}, id="huge-uid"),
    ],
)
def test_confirm_bad_link(api_client, bidder, other_bidder, reset_link, tamper):
    link = tamper(reset_link, urlsafe_base64_encode(force_bytes(other_bidder.pk)))

    response = api_client.post(CONFIRM, confirmation(link), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_reset_token"
    assert can_log_in(api_client, "alice", PASSWORD)
    assert can_log_in(api_client, "bob", PASSWORD)


def test_confirm_mismatched_passwords(api_client, bidder, reset_link):
    response = api_client.post(CONFIRM, confirmation(reset_link, confirm=NEW_PASSWORD + "!"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "password_mismatch"
    assert "new_password_confirm" in response.json()["errors"]
    assert can_log_in(api_client, "alice", PASSWORD)


@pytest.mark.parametrize("password", ["short", "password123", "20481632641282"])
def test_confirm_weak_password(api_client, bidder, reset_link, password):
    response = api_client.post(CONFIRM, confirmation(reset_link, password), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert response.json()["errors"]["new_password"]
    assert can_log_in(api_client, "alice", PASSWORD)


def test_confirm_link_survives_a_rejected_weak_password(api_client, bidder, reset_link):
    api_client.post(CONFIRM, confirmation(reset_link, "short"), format="json")

    assert api_client.post(CONFIRM, confirmation(reset_link), format="json").status_code == 200


@pytest.mark.parametrize("missing", ["uid", "token", "new_password", "new_password_confirm"])
def test_confirm_missing_field(api_client, bidder, reset_link, missing):
    body = confirmation(reset_link)
    del body[missing]

    response = api_client.post(CONFIRM, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"
    assert missing in response.json()["errors"]
