"""/ws/notifications/ (a user's own events) and /ws/auctions/<slug>/ (every lot event of a sale)."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from rest_framework_simplejwt.tokens import AccessToken

from lots.models import Auction
from lots.services import close_lot
from testsupport.bidding import bid
from testsupport.ws import clock_near_expiry

pytestmark = pytest.mark.django_db(transaction=True)


place_bid = database_sync_to_async(bid)


async def inbox_of(ws, user):
    """A user's notification socket (it sends nothing on connect)."""
    return await ws.open("/ws/notifications/", user=user)


# --- /ws/notifications/ ------------------------------------------------------------


async def test_anonymous_notifications_close_with_4401(ws):
    assert await ws.closed_with("/ws/notifications/") == 4401


async def test_outbid_reaches_the_outbid_bidder_only(ws, new_lot, bidder, other_bidder, third_bidder):
    lot = await new_lot(title="Art deco lamp", starting_price="10.00")
    alice, bob, carol = [await inbox_of(ws, user) for user in (bidder, other_bidder, third_bidder)]
    await place_bid(lot, bidder, "10.00")
    await alice.assert_silent(0.2)

    await place_bid(lot, other_bidder, "12.00")

    outbid = await alice.next()
    assert outbid["type"] == "OUTBID"
    assert (outbid["lot_id"], outbid["title"], outbid["current_price"], outbid["high_bidder"]) == (
        lot.pk,
        "Art deco lamp",
        "12.00",
        "Bidder 2",  # bob, by his alias: a notice names no other bidder's username
    )
    assert outbid["min_next_bid"] == "12.50"
    await bob.assert_silent()
    await carol.assert_silent()


async def test_a_challenger_beaten_by_a_proxy_at_once_is_told(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "10.00", max_amount="50.00")
    alice, bob = await inbox_of(ws, bidder), await inbox_of(ws, other_bidder)

    await place_bid(lot, other_bidder, "20.00")

    outbid = await bob.next()
    assert (outbid["type"], outbid["current_price"], outbid["high_bidder"]) == ("OUTBID", "20.50", "Bidder 1")
    await alice.assert_silent()


async def test_closing_tells_the_winner_and_the_seller(ws, new_lot, bidder, other_bidder, seller):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, other_bidder, "10.00")
    await place_bid(lot, bidder, "15.00")
    alice, bob, sam = [await inbox_of(ws, user) for user in (bidder, other_bidder, seller)]

    await database_sync_to_async(close_lot)(lot_id=lot.pk, actor=seller)

    won = await alice.next()
    assert (won["type"], won["lot_id"], won["final_price"]) == ("WON", lot.pk, "15.00")
    sold = await sam.next()
    assert (sold["type"], sold["winner"], sold["final_price"]) == ("LOT_SOLD", "alice", "15.00")
    await bob.assert_silent()


async def test_an_unsold_lot_tells_the_seller(ws, new_lot, bidder, seller):
    lot = await new_lot(starting_price="10.00", reserve_price="100.00")
    await place_bid(lot, bidder, "20.00")
    alice, sam = await inbox_of(ws, bidder), await inbox_of(ws, seller)

    await database_sync_to_async(close_lot)(lot_id=lot.pk, actor=seller)

    unsold = await sam.next()
    assert (unsold["type"], unsold["lot_id"], unsold["reserve_met"], unsold["bid_count"]) == (
        "LOT_UNSOLD",
        lot.pk,
        False,
        1,
    )
    await alice.assert_silent()


async def test_buy_now_over_a_socket_notifies_buyer_seller_and_old_leader(ws, new_lot, bidder, other_bidder, seller):
    lot = await new_lot(starting_price="10.00", buy_now_price="80.00")
    await place_bid(lot, other_bidder, "10.00")
    alice, bob, sam = [await inbox_of(ws, user) for user in (bidder, other_bidder, seller)]
    room, _ = await ws.watch(lot, bidder)

    reply = await room.request({"type": "BUY_NOW"})

    assert reply["type"] == "BID_ACCEPTED"
    assert (await alice.next())["type"] == "WON"
    assert (await sam.next())["type"] == "LOT_SOLD"
    assert (await bob.next())["type"] == "OUTBID"


async def test_notification_socket_answers_ping_and_refuses_the_rest(ws, bidder):
    socket = await inbox_of(ws, bidder)

    assert (await socket.request({"type": "PING"}))["type"] == "PONG"
    refused = await socket.request({"type": "NEW_BID", "amount": "10.00"})
    assert (refused["type"], refused["code"]) == ("ERROR", "unknown_type")


async def test_notification_socket_closes_when_its_token_expires(ws, bidder, monkeypatch):
    token = AccessToken.for_user(bidder)
    token.set_exp(lifetime=timedelta(hours=1))
    clock_near_expiry(monkeypatch)
    socket = await ws.open(f"/ws/notifications/?token={token}")
    assert await socket.is_open()

    assert await socket.close_code() == 4401


# --- /ws/auctions/<slug>/ -------------------------------------------------------------


@database_sync_to_async
def make_auction(slug: str = "spring-sale") -> Auction:
    return Auction.objects.create(title="Spring sale", slug=slug)


async def test_auction_room_starts_with_its_status_and_gets_every_lot_event(ws, new_lot, bidder, other_bidder, seller):
    auction = await make_auction()
    lamp = await new_lot(title="Lamp", auction=auction, starting_price="10.00")
    vase = await new_lot(title="Vase", auction=auction, starting_price="20.00")
    elsewhere = await new_lot(title="Not in the sale")
    socket = await ws.open("/ws/auctions/spring-sale/")

    status = await socket.receive()
    assert status["type"] == "AUCTION_STATUS"
    assert status["auction"] == {"slug": "spring-sale", "title": "Spring sale"}
    assert sorted(lot["id"] for lot in status["lots"]) == sorted([lamp.pk, vase.pk])
    assert status["server_time"]

    await place_bid(lamp, bidder, "10.00")
    await place_bid(elsewhere, bidder, "10.00")
    await place_bid(vase, other_bidder, "20.00")
    await place_bid(lamp, other_bidder, "11.00")
    await database_sync_to_async(close_lot)(lot_id=vase.pk, actor=seller)

    events = await socket.events(4)
    assert [(e["type"], e["lot_id"], e["seq"]) for e in events] == [
        ("NEW_BID", lamp.pk, 1),
        ("NEW_BID", vase.pk, 1),
        ("NEW_BID", lamp.pk, 2),
        ("AUCTION_ENDED", vase.pk, 2),
    ]
    await socket.assert_silent()


async def test_auction_room_for_a_websocket_bid_too(ws, new_lot, bidder):
    auction = await make_auction()
    lot = await new_lot(auction=auction, starting_price="10.00")
    sale = await ws.open("/ws/auctions/spring-sale/", user=bidder)
    assert (await sale.receive())["type"] == "AUCTION_STATUS"
    room, _ = await ws.watch(lot, bidder)

    await room.send({"type": "NEW_BID", "amount": "10.00"})

    event = await sale.next()
    assert (event["type"], event["lot_id"], event["seq"], event["bid"]["bidder"]) == ("NEW_BID", lot.pk, 1, "Bidder 1")


async def test_auction_room_errors(ws, settings):
    await make_auction()

    assert await ws.closed_with("/ws/auctions/no-such-sale/") == 4404
    socket = await ws.open("/ws/auctions/spring-sale/")
    assert (await socket.receive())["type"] == "AUCTION_STATUS"
    assert (await socket.request({"type": "PING"}))["type"] == "PONG"
    for frame in ({"type": "NEW_BID", "amount": "10.00"}, {"type": "DANCE"}):
        reply = await socket.request(frame)
        assert (reply["type"], reply["code"]) == ("ERROR", "unknown_type")

    settings.WS_ANONYMOUS_CAN_WATCH = False
    assert await ws.closed_with("/ws/auctions/spring-sale/") == 4401
