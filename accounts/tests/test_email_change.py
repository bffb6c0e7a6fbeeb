"""A new e-mail address (PATCH /api/users/me/) needs the current password: a stolen session alone
must not be able to move the address a password reset goes to."""

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

ME = "/api/users/me/"


@pytest.fixture
def client(bidder):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(bidder).access_token}")
    return client


@pytest.mark.parametrize(
    ("password", "code"),
    [(None, "password_required"), ("", "password_required"), ("not-my-password", "wrong_password")],
)
def test_a_new_address_without_the_right_password_is_refused_next_to_the_password_field(client, bidder, password, code):
    data = (
        {"email": "new@example.com"} if password is None else {"email": "new@example.com", "current_password": password}
    )

    response = client.patch(ME, data, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert list(response.json()["errors"]) == ["current_password"]
    bidder.refresh_from_db()
    assert bidder.email == "alice@example.com"


def test_the_right_password_changes_the_address_and_is_never_echoed(client, bidder):
    response = client.patch(ME, {"email": "new@example.com", "current_password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["email"] == "new@example.com"
    assert "current_password" not in response.json()
    bidder.refresh_from_db()
    assert bidder.email == "new@example.com"


@pytest.mark.parametrize("changes", [{"email_notifications": False}, {"email": "ALICE@example.com"}])
def test_other_fields_and_the_same_address_need_no_password(client, bidder, changes):
    response = client.patch(ME, changes, format="json")

    assert response.status_code == 200, response.content


def test_guesses_of_the_password_count_as_log_in_attempts_on_the_account(settings, client):
    settings.THROTTLE_AUTH = "1000/minute"
    settings.THROTTLE_LOGIN_ACCOUNT = "2/15m"
    for guess in ("guess-1", "guess-2"):
        answer = client.patch(ME, {"email": "new@example.com", "current_password": guess}, format="json")
        assert answer.json()["code"] == "wrong_password"

    response = client.patch(ME, {"email": "new@example.com", "current_password": PASSWORD}, format="json")

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    # Reading one's account counts nothing.
    assert client.get(ME).status_code == 200
