"""JWTAuthMiddleware: a ticket, a token or the access cookie sets scope["user"]; bad ones close 4401.

The stack is built here rather than imported from auction_site.asgi, around a consumer
that reports what the middleware put in the scope.
"""

from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core import signing
from django.urls import path
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.middleware import CLOSE_UNAUTHORIZED, JWTAuthMiddlewareStack
from accounts.services import issue_ws_ticket

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


class EchoConsumer(AsyncJsonWebsocketConsumer):
    # No channel layer: the middleware is under test, and a Redis layer's pending
    # receive would hold every disconnect for a second.
    channel_layer_alias = "none-configured"

    async def connect(self):
        await self.accept()
        user, expires_at = self.scope["user"], self.scope["auth_expires_at"]
        await self.send_json(
            {
                "username": user.username,
                "anonymous": user.is_anonymous,
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
        )


def application():
    return OriginValidator(
        JWTAuthMiddlewareStack(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])), ["localhost", "testserver"]
    )


async def who(query: str = "", headers: list | None = None) -> dict:
    """Connect, return what the consumer saw, disconnect."""
    communicator = WebsocketCommunicator(application(), f"/ws/echo/{query}", headers=headers or [ORIGIN])
    try:
        connected, _ = await communicator.connect()
        assert connected
        return await communicator.receive_json_from()
    finally:
        await communicator.disconnect()


async def assert_refused(query: str = "", headers: list | None = None) -> None:
    """The handshake is accepted, then closed with 4401, and nothing reaches the consumer."""
    communicator = WebsocketCommunicator(application(), f"/ws/echo/{query}", headers=headers or [ORIGIN])
    try:
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_output() == {"type": "websocket.close", "code": CLOSE_UNAUTHORIZED}
        assert await communicator.receive_nothing()
    finally:
        await communicator.disconnect()


def expired_access(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return str(token)


@pytest.fixture
def inactive_user(make_user):
    return make_user("dormant", is_active=False)


# --- No credentials ------------------------------------------------------------------


async def test_no_credentials_is_anonymous():
    assert await who() == {"username": "", "anonymous": True, "expires_at": None}


async def test_empty_parameters_are_anonymous():
    assert (await who("?ticket=&token="))["anonymous"] is True


# --- ?token= -------------------------------------------------------------------------


async def test_valid_token(bidder):
    token = AccessToken.for_user(bidder)

    seen = await who(f"?token={token}")

    assert seen["username"] == "alice"
    assert seen["anonymous"] is False
    assert datetime.fromisoformat(seen["expires_at"]) == datetime.fromtimestamp(token["exp"], tz=UTC)


@pytest.mark.parametrize("kind", ["expired", "garbage", "refresh-token", "tampered"])
async def test_bad_token_closes_4401(bidder, kind):
    if kind == "refresh-token":
        token = str(await database_sync_to_async(RefreshToken.for_user)(bidder))
    else:
        token = {
            "expired": lambda: expired_access(bidder),
            "garbage": lambda: "abc.def.ghi",
            "tampered": lambda: str(AccessToken.for_user(bidder))[:-3] + "abc",
        }[kind]()

    await assert_refused(f"?token={token}")


async def test_token_of_an_inactive_user_closes_4401(inactive_user):
    await assert_refused(f"?token={AccessToken.for_user(inactive_user)}")


# --- ?ticket= ------------------------------------------------------------------------


async def test_ticket(bidder):
    token_expires = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(minutes=3)

    seen = await who(f"?ticket={issue_ws_ticket(user=bidder, expires_at=token_expires)}")

    # The socket ends when the access token the ticket was bought with expires.
    assert seen == {"username": "alice", "anonymous": False, "expires_at": token_expires.isoformat()}


async def test_ticket_bought_with_a_token_expired_since_closes_4401(bidder):
    await assert_refused(f"?ticket={issue_ws_ticket(user=bidder, expires_at=datetime.now(tz=UTC))}")


async def test_ticket_of_a_user_whose_sessions_ended_since_closes_4401(bidder):
    ticket = issue_ws_ticket(user=bidder)
    await database_sync_to_async(end_sessions_now)(bidder)

    await assert_refused(f"?ticket={ticket}")


def end_sessions_now(user) -> None:
    from accounts.services import end_sessions

    end_sessions(user_ids=[user.pk])


async def test_reused_ticket_closes_4401(bidder):
    ticket = issue_ws_ticket(user=bidder)
    assert (await who(f"?ticket={ticket}"))["username"] == "alice"

    await assert_refused(f"?ticket={ticket}")


async def test_expired_ticket_closes_4401(bidder, monkeypatch):
    issued = int(datetime.now(tz=UTC).timestamp()) - settings.WS_TICKET_TTL_SECONDS - 5
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(issued))
    ticket = issue_ws_ticket(user=bidder)
    monkeypatch.undo()

    await assert_refused(f"?ticket={ticket}")


@pytest.mark.parametrize("kind", ["garbage", "tampered", "other-salt"])
async def test_forged_ticket_closes_4401(bidder, kind):
    ticket = {
        "garbage": lambda: "not-a-ticket",
        "tampered": lambda: issue_ws_ticket(user=bidder)[:-2] + "xx",
        "other-salt": lambda: signing.dumps({"u": bidder.pk, "j": "abc"}, salt="something-else", compress=True),
    }[kind]

    await assert_refused(f"?ticket={ticket()}")


async def test_ticket_of_a_user_deactivated_since_closes_4401(inactive_user):
    await assert_refused(f"?ticket={issue_ws_ticket(user=inactive_user)}")


async def test_ticket_wins_over_token(bidder, other_bidder):
    seen = await who(f"?ticket={issue_ws_ticket(user=other_bidder)}&token={AccessToken.for_user(bidder)}")

    assert seen["username"] == "bob"


# --- The access cookie ---------------------------------------------------------------


async def test_access_cookie(bidder):
    token = AccessToken.for_user(bidder)
    cookie = f"{settings.JWT_ACCESS_COOKIE}={token}; csrftoken=abc".encode()

    seen = await who(headers=[ORIGIN, (b"cookie", cookie)])

    assert seen["username"] == "alice"
    assert datetime.fromisoformat(seen["expires_at"]) == datetime.fromtimestamp(token["exp"], tz=UTC)


@pytest.mark.parametrize("kind", ["expired", "garbage"])
async def test_bad_access_cookie_closes_4401(bidder, kind):
    token = expired_access(bidder) if kind == "expired" else "garbage"

    await assert_refused(headers=[ORIGIN, (b"cookie", f"{settings.JWT_ACCESS_COOKIE}={token}".encode())])


async def test_token_parameter_wins_over_cookie(bidder, other_bidder):
    cookie = f"{settings.JWT_ACCESS_COOKIE}={AccessToken.for_user(bidder)}".encode()

    seen = await who(f"?token={AccessToken.for_user(other_bidder)}", headers=[ORIGIN, (b"cookie", cookie)])

    assert seen["username"] == "bob"


# --- Origin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[(b"origin", b"https://evil.example")], [(b"origin", b"http://localhost.evil.example")], []],
    ids=["foreign", "lookalike", "missing"],
)
async def test_foreign_origin_is_refused_before_authentication(bidder, headers):
    communicator = WebsocketCommunicator(application(), f"/ws/echo/?token={AccessToken.for_user(bidder)}", headers)
    try:
        connected, _ = await communicator.connect()
        assert not connected
    finally:
        await communicator.disconnect()


async def test_allowed_origin_with_port(bidder):
    seen = await who(f"?token={AccessToken.for_user(bidder)}", headers=[(b"origin", b"http://testserver:8000")])

    assert seen["username"] == "alice"
