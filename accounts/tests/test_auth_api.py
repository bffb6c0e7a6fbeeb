"""Registration, JWT tokens, logout, the current user and WebSocket tickets over HTTP."""

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.services import aredeem_ws_ticket
from conftest import PASSWORD

pytestmark = pytest.mark.django_db

User = get_user_model()

REGISTER = "/api/auth/register/"
TOKEN = "/api/auth/token/"
REFRESH = "/api/auth/token/refresh/"
VERIFY = "/api/auth/token/verify/"
LOGOUT = "/api/auth/logout/"
ME = "/api/users/me/"
WS_TICKET = "/api/auth/ws-ticket/"


def registration(**overrides) -> dict:
    data = {
        "username": "dora",
        "email": "dora@example.com",
        "password": PASSWORD,
        "password_confirm": PASSWORD,
        "first_name": "Dora",
        "last_name": "Marquez",
    }
    data.update(overrides)
    return data


def expired(token):
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


# --- Registration -------------------------------------------------------------


def test_register_creates_the_user_and_never_returns_the_password(api_client):
    response = api_client.post(REGISTER, registration(), format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "dora"
    assert body["email"] == "dora@example.com"
    assert (body["first_name"], body["last_name"]) == ("Dora", "Marquez")
    assert body["is_staff"] is False
    assert not {"password", "password_confirm"} & body.keys()
    assert PASSWORD not in response.content.decode()
    user = User.objects.get(username="dora")
    assert body["id"] == user.pk
    assert user.check_password(PASSWORD)
    assert not user.is_staff


def test_register_without_names(api_client):
    data = registration()
    del data["first_name"], data["last_name"]

    response = api_client.post(REGISTER, data, format="json")

    assert response.status_code == 201
    assert (response.json()["first_name"], response.json()["last_name"]) == ("", "")


def test_registered_user_can_log_in(api_client, obtain_tokens):
    api_client.post(REGISTER, registration(), format="json")

    tokens = obtain_tokens("dora")

    assert AccessToken(tokens["access"])["user_id"] == str(User.objects.get(username="dora").pk)


@pytest.mark.parametrize("missing", ["username", "email", "password", "password_confirm"])
def test_register_missing_field(api_client, missing):
    data = registration()
    del data[missing]

    response = api_client.post(REGISTER, data, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"
    assert missing in response.json()["errors"]
    assert not User.objects.exists()


def test_register_mismatched_passwords(api_client):
    response = api_client.post(REGISTER, registration(password_confirm=PASSWORD + "!"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "password_mismatch"
    assert "password_confirm" in response.json()["errors"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("Xy7!", id="too-short"),
        pytest.param("password123", id="common"),
        pytest.param("8203948571029", id="numeric"),
        pytest.param("MarquezDora", id="like-the-name"),
    ],
)
def test_register_applies_the_password_validators(api_client, password):
    response = api_client.post(REGISTER, registration(password=password, password_confirm=password), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert response.json()["errors"]["password"]
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("email", "not-an-address", "invalid"),
        ("username", "has space", "invalid"),
        ("username", "x" * 151, "max_length"),
    ],
)
def test_register_malformed_field(api_client, field, value, code):
    response = api_client.post(REGISTER, registration(**{field: value}), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert field in response.json()["errors"]
    assert not User.objects.exists()


def test_register_duplicate_email_in_another_case(api_client, make_user):
    make_user("dolores", email="Dora@Example.com")

    response = api_client.post(REGISTER, registration(email="DORA@example.COM"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "email_taken"
    assert not User.objects.filter(username="dora").exists()


def test_register_duplicate_username_in_another_case(api_client, make_user):
    make_user("Dora", email="first-dora@example.com")

    response = api_client.post(REGISTER, registration(username="dORA"), format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "username_taken"
    assert User.objects.count() == 1


# --- Obtaining tokens ---------------------------------------------------------


def test_token_with_username(api_client, bidder):
    response = api_client.post(TOKEN, {"username": "alice", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(bidder.pk)
    assert RefreshToken(response.json()["refresh"])["user_id"] == str(bidder.pk)
    bidder.refresh_from_db()
    assert bidder.last_login is not None


@pytest.mark.parametrize("login", ["alice@example.com", "ALICE@Example.COM"])
def test_token_with_email_in_any_case(api_client, bidder, login):
    response = api_client.post(TOKEN, {"username": login, "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(bidder.pk)


def test_token_with_a_username_that_contains_an_at_sign(api_client, make_user):
    # Registration accepts "@" in usernames, so such a user must still be able to log in by username.
    user = make_user("dj@night", email="dj@example.com")

    response = api_client.post(TOKEN, {"username": "dj@night", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(user.pk)


def test_token_email_takes_precedence_over_a_username_that_looks_like_it(api_client, make_user):
    # Someone naming themselves after another person's address must not lock that person out.
    owner = make_user("owner", email="owner@example.com")
    make_user("owner@example.com", email="squatter@example.com", password="another-long-passphrase")

    response = api_client.post(TOKEN, {"username": "owner@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(owner.pk)


@pytest.mark.parametrize("login", ["alice", "alice@example.com", "nobody", "nobody@example.com"])
def test_token_wrong_password_or_unknown_user(api_client, bidder, login):
    response = api_client.post(TOKEN, {"username": login, "password": "not-the-password"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"
    assert "access" not in response.json()


def test_token_username_is_case_sensitive(api_client, bidder):
    response = api_client.post(TOKEN, {"username": "ALICE", "password": PASSWORD}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


def test_token_inactive_user(api_client, make_user):
    make_user("gone", is_active=False)

    response = api_client.post(TOKEN, {"username": "gone", "password": PASSWORD}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


@pytest.mark.parametrize("missing", ["username", "password"])
def test_token_missing_field(api_client, bidder, missing):
    data = {"username": "alice", "password": PASSWORD}
    del data[missing]

    response = api_client.post(TOKEN, data, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"
    assert missing in response.json()["errors"]


# --- Refreshing, verifying, logging out ----------------------------------------


def test_refresh_rotates_and_blacklists_the_old_token(api_client, bidder, obtain_tokens):
    old = obtain_tokens("alice")

    response = api_client.post(REFRESH, {"refresh": old["refresh"]}, format="json")

    assert response.status_code == 200
    new = response.json()
    assert new["refresh"] != old["refresh"]
    assert AccessToken(new["access"])["user_id"] == str(bidder.pk)
    assert RefreshToken(new["refresh"])["user_id"] == str(bidder.pk)
    assert BlacklistedToken.objects.filter(token__jti=RefreshToken(old["refresh"], verify=False)["jti"]).exists()

    reused = api_client.post(REFRESH, {"refresh": old["refresh"]}, format="json")

    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"
    assert reused.json()["detail"] == "Token is blacklisted"
    # The rotated token itself still works.
    assert api_client.post(REFRESH, {"refresh": new["refresh"]}, format="json").status_code == 200


def test_refresh_expired_token(api_client, bidder):
    response = api_client.post(REFRESH, {"refresh": expired(RefreshToken.for_user(bidder))}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert response.json()["detail"] == "Token is expired"


@pytest.mark.parametrize("kind", ["garbage", "access-token", "tampered"])
def test_refresh_rejects_what_is_not_a_refresh_token(api_client, bidder, kind):
    refresh = RefreshToken.for_user(bidder)
    token = {
        "garbage": "not.a.token",
        "access-token": str(refresh.access_token),
        "tampered": str(refresh)[:-2] + ("AA" if not str(refresh).endswith("AA") else "BB"),
    }[kind]

    response = api_client.post(REFRESH, {"refresh": token}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_refresh_for_an_inactive_user(api_client, bidder):
    refresh = str(RefreshToken.for_user(bidder))
    bidder.is_active = False
    bidder.save()

    response = api_client.post(REFRESH, {"refresh": refresh}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


def test_refresh_for_a_deleted_user(api_client, bidder):
    refresh = str(RefreshToken.for_user(bidder))
    bidder.delete()

    response = api_client.post(REFRESH, {"refresh": refresh}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


def test_refresh_missing_token(api_client):
    response = api_client.post(REFRESH, {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"


def test_verify_valid_tokens(api_client, bidder, obtain_tokens):
    tokens = obtain_tokens("alice")

    for token in tokens.values():
        assert api_client.post(VERIFY, {"token": token}, format="json").status_code == 200


@pytest.mark.parametrize("kind", ["expired", "garbage"])
def test_verify_bad_token(api_client, bidder, kind):
    token = expired(AccessToken.for_user(bidder)) if kind == "expired" else "abc.def.ghi"

    response = api_client.post(VERIFY, {"token": token}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_verify_blacklisted_refresh_token(api_client, bidder, obtain_tokens):
    refresh = obtain_tokens("alice")["refresh"]
    assert api_client.post(LOGOUT, {"refresh": refresh}, format="json").status_code == 200

    response = api_client.post(VERIFY, {"token": refresh}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_verify_missing_token(api_client):
    response = api_client.post(VERIFY, {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"


def test_logout_blacklists_the_refresh_token(api_client, bidder, obtain_tokens):
    refresh = obtain_tokens("alice")["refresh"]

    response = api_client.post(LOGOUT, {"refresh": refresh}, format="json")

    assert response.status_code == 200
    assert BlacklistedToken.objects.filter(token__jti=RefreshToken(refresh, verify=False)["jti"]).exists()
    refused = api_client.post(REFRESH, {"refresh": refresh}, format="json")
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_not_valid"
    again = api_client.post(LOGOUT, {"refresh": refresh}, format="json")
    assert again.status_code == 401
    assert again.json()["code"] == "token_not_valid"


def test_logout_leaves_other_sessions_alone(api_client, bidder, obtain_tokens):
    phone, laptop = obtain_tokens("alice"), obtain_tokens("alice")

    api_client.post(LOGOUT, {"refresh": phone["refresh"]}, format="json")

    assert api_client.post(REFRESH, {"refresh": laptop["refresh"]}, format="json").status_code == 200


@pytest.mark.parametrize("body", [{}, {"refresh": "garbage"}], ids=["missing", "garbage"])
def test_logout_bad_input(api_client, body):
    response = api_client.post(LOGOUT, body, format="json")

    assert response.status_code == (400 if not body else 401)
    assert response.json()["code"] == ("required" if not body else "token_not_valid")


def test_logout_with_an_expired_refresh_token(api_client, bidder):
    response = api_client.post(LOGOUT, {"refresh": expired(RefreshToken.for_user(bidder))}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


# --- The current user -----------------------------------------------------------


def test_me(client_for, bidder):
    response = client_for(bidder).get(ME)

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["username"], body["email"]) == (bidder.pk, "alice", "alice@example.com")
    assert body["email_notifications"] is True
    assert "password" not in body


def test_me_needs_authentication(api_client):
    response = api_client.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", ["expired", "garbage", "refresh-token"])
def test_me_with_a_bad_access_token(api_client, bidder, kind):
    token = {
        "expired": lambda: expired(AccessToken.for_user(bidder)),
        "garbage": lambda: "abc.def.ghi",
        "refresh-token": lambda: str(RefreshToken.for_user(bidder)),
    }[kind]()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = api_client.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"
    assert response.json()["detail"] == "Given token not valid for any token type"


def test_me_for_a_user_deactivated_after_login(client_for, bidder):
    client = client_for(bidder)
    bidder.is_active = False
    bidder.save()

    response = client.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "user_inactive"


def test_patch_me(client_for, bidder):
    response = client_for(bidder).patch(
        ME, {"first_name": "Alice", "last_name": "Liddell", "email_notifications": False}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["first_name"] == "Alice"
    bidder.refresh_from_db()
    assert (bidder.first_name, bidder.last_name, bidder.email_notifications) == ("Alice", "Liddell", False)


def test_patch_me_cannot_change_read_only_fields(client_for, bidder):
    response = client_for(bidder).patch(
        ME, {"username": "mallory", "is_staff": True, "id": 999, "date_joined": "2000-01-01T00:00:00Z"}, format="json"
    )

    assert response.status_code == 200
    bidder.refresh_from_db()
    assert bidder.username == "alice"
    assert not bidder.is_staff
    assert bidder.date_joined.year != 2000
    assert User.objects.filter(pk=bidder.pk).exists()


def test_patch_me_email_taken_in_another_case(client_for, bidder, other_bidder):
    response = client_for(bidder).patch(ME, {"email": "BOB@example.com"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "email_taken"
    bidder.refresh_from_db()
    assert bidder.email == "alice@example.com"


def test_patch_me_own_email_in_another_case(client_for, bidder):
    response = client_for(bidder).patch(ME, {"email": "Alice@Example.com"}, format="json")

    assert response.status_code == 200
    bidder.refresh_from_db()
    assert bidder.email == "Alice@Example.com"


def test_patch_me_malformed_email(client_for, bidder):
    response = client_for(bidder).patch(ME, {"email": "nope"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_patch_me_needs_authentication(api_client):
    response = api_client.patch(ME, {"first_name": "Eve"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_put_me_is_not_allowed(client_for, bidder):
    response = client_for(bidder).put(ME, {"email": "alice@example.com"}, format="json")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# --- WebSocket tickets ----------------------------------------------------------


def test_ws_ticket(api_client, bidder, settings):
    access = RefreshToken.for_user(bidder).access_token
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")

    response = api_client.post(WS_TICKET)

    assert response.status_code == 201
    body = response.json()
    assert body["expires_in"] == settings.WS_TICKET_TTL_SECONDS == 30
    assert body["ticket"] != api_client.post(WS_TICKET).json()["ticket"]
    redeemed = async_to_sync(aredeem_ws_ticket)(ticket=body["ticket"])
    # The socket it opens lives as long as the token that bought it, no longer.
    assert (redeemed.user_id, redeemed.expires_at.timestamp()) == (bidder.pk, access["exp"])
    assert async_to_sync(aredeem_ws_ticket)(ticket=body["ticket"]) is None


def test_ws_ticket_needs_authentication(api_client):
    response = api_client.post(WS_TICKET)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
