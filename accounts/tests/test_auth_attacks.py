"""Forged and revoked credentials, and acting as someone else, over REST and WebSocket.

What the other suites already cover is listed in docs/reliability.md (expired
tokens, tampered signatures, reused tickets and refresh tokens, foreign
origins, sockets closed at token expiry, closing a lot over a socket as
someone else); these fill the gaps: tokens signed with another key, `alg:
none`, a token re-pointed at another user, an access token revoked by a
password change on a socket, and bids, closes and cancels claimed for someone
else.
"""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from bids.models import Bid
from lots.models import LotEvent, LotStatus
from testsupport.ws import Sockets

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

ME = "/api/users/me/"


def _segment(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def signed_with_another_key(user) -> str:
    """A well-formed access token for `user`, signed with a key the server does not hold."""
    return jwt.encode(dict(AccessToken.for_user(user).payload), "not-the-server-key-" * 3, algorithm="HS256")


def unsigned(user) -> str:
    """`alg: none`: the payload of a valid token for `user`, with no signature at all."""
    payload = dict(AccessToken.for_user(user).payload)
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(payload)}."


def repointed(holder, victim) -> str:
    """`holder`'s genuine token with its payload swapped for `victim`'s, keeping `holder`'s signature."""
    header, _, signature = str(AccessToken.for_user(holder)).split(".")
    return f"{header}.{_segment(dict(AccessToken.for_user(victim).payload))}.{signature}"


FORGERIES = {
    "another-key": lambda alice, bob: signed_with_another_key(bob),
    "alg-none": lambda alice, bob: unsigned(bob),
    "repointed": lambda alice, bob: repointed(alice, bob),
}


# --- Forged tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_access_token_is_refused_over_rest(api_client, bidder, other_bidder, forgery):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {FORGERIES[forgery](bidder, other_bidder)}")

    response = api_client.get(ME)

    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_forged_access_token_closes_a_socket_with_4401(make_lot, bidder, other_bidder, forgery):
    lot = await database_sync_to_async(make_lot)()
    token = await database_sync_to_async(FORGERIES[forgery])(bidder, other_bidder)

    async with Sockets() as sockets:
        # The lot's room lets anonymous watchers in: a 4401 here means the credential was refused.
        assert await sockets.closed_with(f"/ws/lots/{lot.pk}/?token={token}") == 4401
        cookie = (b"cookie", f"{settings.JWT_ACCESS_COOKIE}={token}".encode())
        assert await sockets.closed_with(f"/ws/lots/{lot.pk}/", headers=(cookie,)) == 4401


async def test_access_token_revoked_by_a_password_change_closes_a_socket_with_4401(make_lot, bidder):
    lot = await database_sync_to_async(make_lot)()
    token = await database_sync_to_async(lambda: str(AccessToken.for_user(bidder)))()

    def change_password():
        bidder.set_password("a-brand-new-passphrase")
        bidder.save(update_fields=["password"])

    await database_sync_to_async(change_password)()

    async with Sockets() as sockets:
        assert await sockets.closed_with(f"/ws/lots/{lot.pk}/?token={token}") == 4401


# --- Acting as someone else ------------------------------------------------------------------


def test_a_rest_bid_naming_another_bidder_is_placed_as_the_caller(client_for, make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")

    response = client_for(bidder).post(
        f"/api/lots/{lot.pk}/bids/",
        {"amount": "10.00", "bidder": other_bidder.username, "bidder_id": other_bidder.pk, "user": other_bidder.pk},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert list(Bid.objects.filter(lot=lot).values_list("bidder_id", flat=True)) == [bidder.pk]


async def test_a_socket_bid_naming_another_bidder_is_placed_as_the_socket_user(make_lot, bidder, other_bidder):
    lot = await database_sync_to_async(make_lot)(starting_price="10.00")

    async with Sockets() as sockets:
        alice, _ = await sockets.watch(lot, bidder)
        reply = await alice.request(
            {"type": "NEW_BID", "amount": "10.00", "bidder": other_bidder.username, "bidder_id": other_bidder.pk}
        )

    assert reply["type"] == "BID_ACCEPTED", reply
    bidders = await database_sync_to_async(lambda: list(Bid.objects.filter(lot=lot).values_list("bidder", flat=True)))()
    assert bidders == [bidder.pk]


@pytest.mark.parametrize("action", ["close", "cancel"])
def test_only_the_seller_or_staff_close_or_cancel_over_rest(api_client, client_for, make_lot, bidder, action):
    lot = make_lot()

    anonymous = api_client.post(f"/api/lots/{lot.pk}/{action}/")
    other = client_for(bidder).post(f"/api/lots/{lot.pk}/{action}/")

    assert anonymous.status_code == 401
    assert (other.status_code, other.json()["code"]) == (403, "not_lot_manager")
    lot.refresh_from_db()
    assert lot.status == LotStatus.OPEN
    assert not LotEvent.objects.filter(lot=lot).exists()
