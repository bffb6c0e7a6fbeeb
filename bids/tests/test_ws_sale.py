"""/ws/auctions/<slug>/: each lot's events in `seq` order, gaps filled from the stored events, `?since=` replay.

The sale room orders with the lot room's own code (bids/streams.py), one stream per lot.
"""

import json

import pytest
from channels.db import database_sync_to_async

from lots.models import Auction, LotEvent
from testsupport.bidding import bid
from testsupport.ws import send_to_sale, without_broadcast

pytestmark = pytest.mark.django_db(transaction=True)

SLUG = "spring-sale"
place_bid = database_sync_to_async(bid)


@database_sync_to_async
def make_auction() -> Auction:
    return Auction.objects.create(title="Spring sale", slug=SLUG)


@database_sync_to_async
def stored_texts(lot) -> list[str]:
    return list(LotEvent.objects.filter(lot=lot).order_by("seq").values_list("text", flat=True))


async def unbroadcast_bid(lot, user, amount: str) -> None:
    """A bid committed and stored whose broadcast is lost."""
    await database_sync_to_async(without_broadcast)(bid, lot, user, amount)


async def open_sale(ws, query: str = "") -> tuple:
    socket = await ws.open(f"/ws/auctions/{SLUG}/{query}")
    status = await socket.receive()
    assert status["type"] == "AUCTION_STATUS", status
    return socket, status


def lot_seqs(frames: list[dict]) -> list[tuple[int, int]]:
    return [(frame["lot_id"], frame["seq"]) for frame in frames]


async def two_lots(new_lot):
    auction = await make_auction()
    lamp = await new_lot(title="Lamp", auction=auction, starting_price="10.00")
    vase = await new_lot(title="Vase", auction=auction, starting_price="20.00")
    return lamp, vase


async def test_the_status_gives_each_lot_its_seq(ws, new_lot, bidder):
    lamp, vase = await two_lots(new_lot)
    await place_bid(lamp, bidder, "10.00")

    _, status = await open_sale(ws)

    assert {lot["id"]: lot["seq"] for lot in status["lots"]} == {lamp.pk: 1, vase.pk: 0}


async def test_two_lots_events_out_of_order_come_out_in_each_lots_order(ws, new_lot, bidder, other_bidder):
    lamp, vase = await two_lots(new_lot)
    socket, _ = await open_sale(ws)
    for lot, amounts in ((lamp, ("10.00", "11.00")), (vase, ("20.00", "21.00"))):
        await unbroadcast_bid(lot, bidder, amounts[0])
        await unbroadcast_bid(lot, other_bidder, amounts[1])
    lamp_1, lamp_2 = await stored_texts(lamp)
    vase_1, vase_2 = await stored_texts(vase)

    await send_to_sale(SLUG, lamp.pk, 2, lamp_2)
    await send_to_sale(SLUG, vase.pk, 2, vase_2)
    await send_to_sale(SLUG, vase.pk, 1, vase_1)
    await send_to_sale(SLUG, lamp.pk, 1, lamp_1)

    received = await socket.events(4)
    assert lot_seqs(received) == [(vase.pk, 1), (vase.pk, 2), (lamp.pk, 1), (lamp.pk, 2)]
    assert [frame["bid"]["amount"] for frame in received] == ["20.00", "21.00", "10.00", "11.00"]
    await send_to_sale(SLUG, lamp.pk, 1, lamp_1)  # A repeat is dropped.
    await socket.assert_silent(0.5)


async def test_a_lost_broadcast_is_filled_from_the_stored_events(ws, new_lot, bidder, other_bidder, settings):
    settings.WS_GAP_WAIT_SECONDS = 0.1
    lamp, vase = await two_lots(new_lot)
    socket, _ = await open_sale(ws)
    await unbroadcast_bid(lamp, bidder, "10.00")
    await unbroadcast_bid(lamp, other_bidder, "11.00")

    await place_bid(vase, bidder, "20.00")
    await place_bid(lamp, bidder, "12.00")

    received = await socket.events(4)
    lamp_frames = [frame for frame in received if frame["lot_id"] == lamp.pk]
    assert [(f["seq"], f["bid"]["amount"]) for f in lamp_frames] == [(1, "10.00"), (2, "11.00"), (3, "12.00")]
    assert lot_seqs([frame for frame in received if frame["lot_id"] == vase.pk]) == [(vase.pk, 1)]
    await socket.assert_silent()


async def test_a_gap_longer_than_the_replay_limit_sends_that_lots_fresh_status(
    ws, new_lot, bidder, other_bidder, settings
):
    settings.WS_REPLAY_LIMIT = 2
    settings.WS_GAP_WAIT_SECONDS = 0.1
    lamp, _ = await two_lots(new_lot)
    socket, _ = await open_sale(ws)
    for user, amount in ((bidder, "10.00"), (other_bidder, "11.00"), (bidder, "12.00")):
        await unbroadcast_bid(lamp, user, amount)

    await place_bid(lamp, other_bidder, "13.00")

    status = await socket.next()
    assert (status["type"], status["lot_id"], status["seq"]) == ("LOT_STATUS", lamp.pk, 4)
    assert (status["lot"]["current_price"], status["lot"]["bid_count"]) == ("13.00", 4)
    await socket.assert_silent()
    await place_bid(lamp, bidder, "14.00")
    assert lot_seqs([await socket.next()]) == [(lamp.pk, 5)]


async def test_a_lot_new_to_the_sale_is_delivered_from_its_first_event(ws, new_lot, bidder):
    auction = await make_auction()
    socket, status = await open_sale(ws)
    assert status["lots"] == []
    lot = await new_lot(auction=auction, starting_price="10.00")

    await place_bid(lot, bidder, "10.00")

    assert lot_seqs([await socket.next()]) == [(lot.pk, 1)]


# --- Reconnecting with ?since=<lot_id>:<seq>,... ----------------------------------


async def test_since_replays_each_named_lots_missed_events(ws, new_lot, bidder, other_bidder):
    auction = await make_auction()
    lamp, vase, clock = [await new_lot(title=t, auction=auction, starting_price="10.00") for t in "ABC"]
    for amount, user in (("10.00", bidder), ("11.00", other_bidder), ("12.00", bidder)):
        await place_bid(lamp, user, amount)
    for amount, user in (("10.00", bidder), ("11.00", other_bidder)):
        await place_bid(vase, user, amount)
    await place_bid(clock, bidder, "10.00")
    lamp_stored = await stored_texts(lamp)

    # Seen: lamp up to 1, vase up to 2 (all of it); the clock is not named.
    socket, status = await open_sale(ws, f"?since={lamp.pk}:1,{vase.pk}:2")

    # Lots not named (or not replayable) come as fresh state; the others as their missed events.
    assert [(lot["id"], lot["seq"]) for lot in status["lots"]] == [(clock.pk, 1)]
    replayed = await socket.events(2)
    assert replayed == [json.loads(text) for text in lamp_stored[1:]]
    await socket.assert_silent()
    await place_bid(vase, bidder, "12.00")
    assert lot_seqs([await socket.next()]) == [(vase.pk, 3)]


async def test_unusable_since_pairs_get_fresh_state(ws, new_lot, bidder, other_bidder, settings):
    settings.WS_REPLAY_LIMIT = 1
    lamp, vase = await two_lots(new_lot)
    await place_bid(lamp, bidder, "10.00")
    await place_bid(vase, bidder, "20.00")
    await place_bid(vase, other_bidder, "21.00")

    # Ahead of the lot, malformed, a lot of another sale, and (vase) further back than the replay limit.
    for since in (f"{lamp.pk}:5,{vase.pk}:0", f"{lamp.pk}:x,{vase.pk}", "999999:0,%C2%B2:1,,:", "abc"):
        socket, status = await open_sale(ws, f"?since={since}")
        assert sorted((lot["id"], lot["seq"]) for lot in status["lots"]) == [(lamp.pk, 1), (vase.pk, 2)], since
        await socket.assert_silent(0.1)

    socket, status = await open_sale(ws, f"?since={lamp.pk}:1,{vase.pk}:1")
    assert status["lots"] == []
    assert lot_seqs([await socket.next()]) == [(vase.pk, 2)]
