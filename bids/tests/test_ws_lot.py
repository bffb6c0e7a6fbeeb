"""/ws/lots/<id>/: joining, credentials, bidding, history, closing, replay and ordering."""

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from bids import batches as bid_batches
from bids.models import Bid
from conftest import access_token_for
from lots import events
from lots.models import LotEvent
from lots.services import close_lot
from realtime import fanout
from testsupport.bidding import bid
from testsupport.ws import TIMEOUT, clock_near_expiry, forget_presence, send_to_room, seqs, without_broadcast

pytestmark = pytest.mark.django_db(transaction=True)


place_bid = database_sync_to_async(bid)


@database_sync_to_async
def stored_texts(lot) -> list[str]:
    return list(LotEvent.objects.filter(lot=lot).order_by("seq").values_list("text", flat=True))


@database_sync_to_async
def bid_count(lot) -> int:
    return Bid.objects.filter(lot=lot).count()


def by_type(frames: list[dict]) -> dict[str, dict]:
    return {frame["type"]: frame for frame in frames}


async def reply_and_events(socket, count: int) -> tuple[dict, list[dict]]:
    """The bidder's own reply and the next `count` room events, whichever comes first."""
    frames = await socket.events(count + 1)
    [reply] = [frame for frame in frames if "seq" not in frame]
    return reply, [frame for frame in frames if "seq" in frame]


# --- Joining ------------------------------------------------------------------


async def test_watcher_gets_lot_status_then_users_count(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00")
    await forget_presence(lot)

    socket = await ws.open(f"/ws/lots/{lot.pk}/", user=bidder)
    status = await socket.receive()
    count = await socket.receive()

    assert status["type"] == "LOT_STATUS"
    assert status["seq"] == 0
    assert parse_datetime(status["server_time"]) is not None
    assert status["lot"]["id"] == lot.pk
    assert (status["lot"]["status"], status["lot"]["current_price"], status["lot"]["min_next_bid"]) == (
        "open",
        None,
        "10.00",
    )
    assert count == {"type": "USERS_COUNT", "count": 1}


async def test_lot_status_tells_the_places_of_the_lot_s_currency(ws, new_lot, bidder):
    lot = await new_lot(currency="JPY", starting_price="1000")

    socket = await ws.open(f"/ws/lots/{lot.pk}/", user=bidder)
    status = await socket.receive()

    assert (status["lot"]["currency"], status["lot"]["currency_places"]) == ("JPY", 0)


async def test_users_count_follows_joins_and_leaves(ws, new_lot, bidder, other_bidder):
    lot = await new_lot()
    await forget_presence(lot)
    first, _ = await ws.watch(lot, bidder)

    second, _ = await ws.watch(lot, other_bidder)
    assert await first.receive() == {"type": "USERS_COUNT", "count": 2}
    anonymous, _ = await ws.watch(lot)
    assert await first.receive() == {"type": "USERS_COUNT", "count": 3}
    assert await second.receive() == {"type": "USERS_COUNT", "count": 3}

    await second.communicator.disconnect()
    assert await first.receive() == {"type": "USERS_COUNT", "count": 2}
    assert await anonymous.receive() == {"type": "USERS_COUNT", "count": 2}


async def test_anonymous_may_watch_and_see_bids(ws, new_lot, bidder):
    lot = await new_lot()
    anonymous, status = await ws.watch(lot)
    assert status["lot"]["id"] == lot.pk

    await place_bid(lot, bidder, "10.00")

    event = await anonymous.next()
    assert (event["type"], event["seq"], event["bid"]["bidder"]) == ("NEW_BID", 1, "Bidder 1")


async def test_anonymous_cannot_bid_buy_or_close(ws, new_lot):
    lot = await new_lot(buy_now_price="50.00")
    anonymous, _ = await ws.watch(lot)

    for frame in ({"type": "NEW_BID", "amount": "10.00"}, {"type": "BUY_NOW"}, {"type": "CLOSE_AUCTION"}):
        reply = await anonymous.request(frame)
        assert (reply["type"], reply["code"]) == ("ERROR", "auth_required"), frame

    assert await anonymous.is_open()
    assert await bid_count(lot) == 0
    assert await stored_texts(lot) == []


async def test_anonymous_watching_can_be_switched_off(ws, new_lot, bidder, settings):
    settings.WS_ANONYMOUS_CAN_WATCH = False
    lot = await new_lot()

    assert await ws.closed_with(f"/ws/lots/{lot.pk}/") == 4401
    _, status = await ws.watch(lot, bidder)
    assert status["lot"]["id"] == lot.pk


async def test_unknown_lot_closes_with_4404(ws, new_lot):
    lot = await new_lot()

    assert await ws.closed_with(f"/ws/lots/{lot.pk + 1000}/") == 4404
    assert await ws.closed_with("/ws/lots/99999999999999999999999999/") == 4404


async def test_draft_lot_is_only_visible_to_its_seller(ws, new_lot, seller, bidder):
    lot = await new_lot(draft=True)

    assert await ws.closed_with(f"/ws/lots/{lot.pk}/") == 4404
    assert await ws.closed_with(f"/ws/lots/{lot.pk}/", user=bidder) == 4404
    _, status = await ws.watch(lot, seller)
    assert status["lot"]["status"] == "draft"


async def test_foreign_origin_is_refused(ws, new_lot):
    lot = await new_lot()

    _, accepted = await ws.connect(f"/ws/lots/{lot.pk}/", headers=((b"origin", b"http://evil.example"),))

    assert not accepted


# --- Credentials ----------------------------------------------------------------


@database_sync_to_async
def issue_ticket(user) -> str:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    response = client.post("/api/auth/ws-ticket/")
    assert response.status_code == 201, response.content
    return response.json()["ticket"]


async def test_token_ticket_and_cookie_each_identify_the_bidder(ws, new_lot, bidder, other_bidder, third_bidder):
    lot = await new_lot(starting_price="10.00")
    path = f"/ws/lots/{lot.pk}/"
    token = await database_sync_to_async(access_token_for)(bidder)
    cookie = f"access_token={await database_sync_to_async(access_token_for)(third_bidder)}".encode()
    credentials = [
        ("alice", f"{path}?token={token}", ()),
        ("bob", f"{path}?ticket={await issue_ticket(other_bidder)}", ()),
        ("carol", path, ((b"cookie", cookie),)),
    ]

    for number, (amount, (username, url, headers)) in enumerate(
        zip(("10.00", "20.00", "30.00"), credentials, strict=True), start=1
    ):
        socket = await ws.open(url, headers=headers)
        assert (await socket.receive())["type"] == "LOT_STATUS"
        await socket.send({"type": "NEW_BID", "amount": amount})
        reply, [event] = await reply_and_events(socket, 1)
        assert (reply["type"], reply["leading"]) == ("BID_ACCEPTED", True), username
        # Each socket bids as its own user: a new alias each time, and the acceptance names it.
        assert (event["bid"]["bidder"], event["bid"]["amount"]) == (f"Bidder {number}", amount)
        assert reply["bid"]["bidder"] == f"Bidder {number}", username


async def test_ticket_opens_one_socket_only(ws, new_lot, bidder):
    lot = await new_lot()
    ticket = await issue_ticket(bidder)

    first, accepted = await ws.connect(f"/ws/lots/{lot.pk}/?ticket={ticket}")
    assert accepted and (await first.receive())["type"] == "LOT_STATUS"

    assert await ws.closed_with(f"/ws/lots/{lot.pk}/?ticket={ticket}") == 4401


async def test_bad_credentials_close_with_4401(ws, new_lot, bidder):
    lot = await new_lot()
    expired = AccessToken.for_user(bidder)
    expired.set_exp(lifetime=-timedelta(seconds=1))

    for credential in ("token=not-a-jwt", "ticket=forged", f"token={expired}"):
        assert await ws.closed_with(f"/ws/lots/{lot.pk}/?{credential}") == 4401, credential


async def test_socket_closes_with_4401_when_its_token_expires(ws, new_lot, bidder, monkeypatch):
    lot = await new_lot()
    token = AccessToken.for_user(bidder)
    token.set_exp(lifetime=timedelta(hours=1))
    clock_near_expiry(monkeypatch)
    socket = await ws.open(f"/ws/lots/{lot.pk}/?token={token}")
    assert (await socket.receive())["type"] == "LOT_STATUS"
    assert await socket.is_open()

    assert await socket.close_code() == 4401


# --- Bidding ----------------------------------------------------------------


async def test_bid_is_accepted_for_the_bidder_and_broadcast_to_the_room(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    alice, _ = await ws.watch(lot, bidder)
    bob, _ = await ws.watch(lot, other_bidder)
    anonymous, _ = await ws.watch(lot)

    frames = by_type(
        [await alice.request({"type": "NEW_BID", "amount": "12.00", "request_id": "r-1"}), await alice.next()]
    )
    accepted = frames["BID_ACCEPTED"]
    assert accepted["request_id"] == "r-1"
    assert accepted["code"] == "accepted"
    assert (accepted["leading"], accepted["replayed"]) == (True, False)
    assert (accepted["bid"]["amount"], accepted["bid"]["is_proxy"]) == ("12.00", False)
    assert accepted["min_next_bid"] == "12.50"
    # The bidder learns their alias from the acceptance; the room's frame is the same for all.
    assert accepted["bid"]["bidder"] == "Bidder 1"

    for watcher in (alice, bob, anonymous):
        event = frames["NEW_BID"] if watcher is alice else await watcher.next()
        assert event["type"] == "NEW_BID"
        assert (event["seq"], event["lot_id"]) == (1, lot.pk)
        assert event["bid"]["id"] == accepted["bid"]["id"]
        assert {key: event["bid"][key] for key in ("amount", "bidder", "is_proxy")} == {
            "amount": "12.00",
            "bidder": "Bidder 1",
            "is_proxy": False,
        }
        assert parse_datetime(event["bid"]["created_at"]) is not None
        assert {
            key: event["lot"][key]
            for key in ("current_price", "min_next_bid", "bid_count", "high_bidder", "reserve_met")
        } == {
            "current_price": "12.00",
            "min_next_bid": "12.50",
            "bid_count": 1,
            "high_bidder": "Bidder 1",
            "reserve_met": True,
        }
        assert abs(parse_datetime(event["lot"]["ends_at"]) - lot.ends_at) < timedelta(milliseconds=1)
    # The acceptance went to the bidder only.
    await bob.assert_silent()
    await anonymous.assert_silent()


async def test_float_amount_keeps_its_exact_value(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00")
    alice, _ = await ws.watch(lot, bidder)

    await alice.send_text('{"type": "NEW_BID", "amount": 150.55}')
    frames = by_type([await alice.next(), await alice.next()])

    assert frames["BID_ACCEPTED"]["bid"]["amount"] == "150.55"
    assert frames["NEW_BID"]["lot"]["current_price"] == "150.55"


async def test_rejected_bid_goes_to_the_bidder_only(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    alice, _ = await ws.watch(lot, bidder)
    bob, _ = await ws.watch(lot, other_bidder)

    reply = await alice.request({"type": "NEW_BID", "amount": "9.99", "request_id": "low-1"})

    assert reply == {
        "type": "BID_REJECTED",
        "request_id": "low-1",
        "code": "bid_too_low",
        "message": "The minimum bid is 10.00.",
        "min_next_bid": "10.00",
    }
    await bob.assert_silent()
    assert await bid_count(lot) == 0


async def test_rules_refusing_a_bid_send_bid_rejected(ws, new_lot, bidder, seller, staff_user):
    scenarios = {
        "own_lot": (seller, {"type": "NEW_BID", "amount": "20.00"}),
        "staff_cannot_bid": (staff_user, {"type": "NEW_BID", "amount": "20.00"}),
        "already_leading": (bidder, {"type": "NEW_BID", "amount": "20.00"}),
        "lot_closed": (bidder, {"type": "NEW_BID", "amount": "20.00"}),
        "buy_now_unavailable": (bidder, {"type": "BUY_NOW"}),
    }
    for code, (user, frame) in scenarios.items():
        lot = await new_lot(starting_price="10.00")
        if code == "already_leading":
            await place_bid(lot, bidder, "20.00")
        elif code == "lot_closed":
            await database_sync_to_async(close_lot)(lot_id=lot.pk, actor=None)
        socket, status = await ws.watch(lot, user)
        bids_before = await bid_count(lot)

        reply = await socket.request({**frame, "request_id": code})

        assert (reply["type"], reply["code"], reply["request_id"]) == ("BID_REJECTED", code, code)
        assert reply["message"]
        assert await bid_count(lot) == bids_before, code
        assert len(await stored_texts(lot)) == status["seq"], code
        await socket.assert_silent(0.1)


async def test_request_id_makes_a_retry_harmless(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    alice, _ = await ws.watch(lot, bidder)
    bob, _ = await ws.watch(lot, other_bidder)
    frame = {"type": "NEW_BID", "amount": "11.00", "request_id": "same-key"}
    first = by_type([await alice.request(frame), await alice.next()])["BID_ACCEPTED"]
    assert (await bob.next())["seq"] == 1

    retry = await alice.request(frame)

    assert retry["type"] == "BID_ACCEPTED"
    assert retry["replayed"] is True
    assert retry["bid"]["id"] == first["bid"]["id"]
    await bob.assert_silent()
    assert await bid_count(lot) == 1

    conflict = await alice.request({**frame, "amount": "15.00"})
    assert (conflict["type"], conflict["code"]) == ("BID_REJECTED", "idempotency_conflict")
    await bob.assert_silent()
    assert await bid_count(lot) == 1


async def test_proxy_answer_is_broadcast_as_a_proxy_bid(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    alice, _ = await ws.watch(lot, bidder)
    bob, _ = await ws.watch(lot, other_bidder)
    watcher, _ = await ws.watch(lot)
    opening = by_type(
        [await alice.request({"type": "NEW_BID", "amount": "10.00", "max_amount": "50.00"}), await alice.next()]
    )
    assert opening["BID_ACCEPTED"]["bid"]["max_amount"] == "50.00"
    first = await watcher.next()
    assert (first["seq"], first["bid"]["amount"], first["lot"]["current_price"]) == (1, "10.00", "10.00")

    assert (await bob.next())["seq"] == 1
    await bob.send({"type": "NEW_BID", "amount": "20.00", "request_id": "bob-1"})

    challenge, bob_events = await reply_and_events(bob, 2)
    assert (challenge["type"], challenge["leading"]) == ("BID_ACCEPTED", False)
    assert seqs(bob_events) == [2, 3]
    challenger, answer = await watcher.events(2)
    assert (challenger["type"], challenger["seq"]) == ("NEW_BID", 2)
    assert (challenger["bid"]["bidder"], challenger["bid"]["amount"], challenger["bid"]["is_proxy"]) == (
        "Bidder 2",
        "20.00",
        False,
    )
    assert (answer["type"], answer["seq"]) == ("NEW_BID", 3)
    assert (answer["bid"]["bidder"], answer["bid"]["amount"], answer["bid"]["is_proxy"]) == ("Bidder 1", "20.50", True)
    assert (answer["lot"]["current_price"], answer["lot"]["high_bidder"], answer["lot"]["bid_count"]) == (
        "20.50",
        "Bidder 1",
        3,
    )
    # The hidden maximum never reaches the room.
    assert "50.00" not in str([first, challenger, answer])
    assert seqs(await alice.events(2)) == [2, 3]


async def test_rest_bid_reaches_every_watcher(ws, new_lot, bidder, other_bidder, client_for):
    lot = await new_lot(starting_price="10.00")
    watchers = [(await ws.watch(lot, other_bidder))[0], (await ws.watch(lot))[0]]

    response = await database_sync_to_async(
        lambda: client_for(bidder).post(f"/api/lots/{lot.pk}/bids/", {"amount": "25.00"}, format="json")
    )()

    assert response.status_code == 201, response.content
    for watcher in watchers:
        event = await watcher.next()
        assert (event["type"], event["seq"]) == ("NEW_BID", 1)
        assert (event["bid"]["bidder"], event["bid"]["amount"], event["bid"]["id"]) == (
            "Bidder 1",
            "25.00",
            response.json()["bid"]["id"],
        )
        await watcher.assert_silent()


async def test_bid_in_soft_close_window_extends_the_lot(ws, new_lot, bidder):
    lot = await new_lot(ends_at=timezone.now() + timedelta(seconds=60), soft_close_seconds=300)
    watcher, _ = await ws.watch(lot)

    await place_bid(lot, bidder, "10.00")

    new_bid, extended = await watcher.events(2)
    assert (new_bid["type"], new_bid["seq"]) == ("NEW_BID", 1)
    assert (extended["type"], extended["seq"]) == ("LOT_EXTENDED", 2)
    ends_at = parse_datetime(extended["ends_at"])
    assert ends_at > lot.ends_at + timedelta(seconds=200)
    assert parse_datetime(new_bid["lot"]["ends_at"]) == ends_at


async def test_buy_now_sells_and_ends_the_lot(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00", buy_now_price="100.00")
    alice, _ = await ws.watch(lot, bidder)
    watcher, _ = await ws.watch(lot)

    reply = await alice.request({"type": "BUY_NOW", "request_id": "buy-1"})

    assert (reply["type"], reply["request_id"], reply["bid"]["amount"]) == ("BID_ACCEPTED", "buy-1", "100.00")
    new_bid, ended = await watcher.events(2)
    assert (new_bid["type"], new_bid["seq"], new_bid["bid"]["amount"]) == ("NEW_BID", 1, "100.00")
    assert (ended["type"], ended["seq"]) == ("AUCTION_ENDED", 2)
    assert {key: ended["lot"][key] for key in ("status", "winner", "final_price")} == {
        "status": "closed",
        "winner": "Bidder 1",
        "final_price": "100.00",
    }
    assert seqs(await alice.events(2)) == [1, 2]


# --- History, closing, ping ------------------------------------------------------


async def test_get_history_returns_the_newest_public_bids(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "10.00", max_amount="40.00")
    await place_bid(lot, other_bidder, "11.00")  # Alice's proxy answers at 11.50.
    await place_bid(lot, bidder, "60.00", max_amount="90.00")  # Raises her own maximum: private.
    anonymous, _ = await ws.watch(lot)

    latest = await anonymous.request({"type": "GET_HISTORY", "limit": 2})
    everything = await anonymous.request({"type": "GET_HISTORY"})

    assert latest["type"] == "BID_HISTORY"
    assert [(b["bidder"], b["amount"], b["is_proxy"]) for b in latest["bids"]] == [
        ("Bidder 1", "11.50", True),
        ("Bidder 2", "11.00", False),
    ]
    assert [b["amount"] for b in everything["bids"]] == ["11.50", "11.00", "10.00"]
    assert all("max_amount" not in b for b in everything["bids"])
    assert "40.00" not in str(everything) and "90.00" not in str(everything)


@pytest.mark.parametrize("closer", ["seller", "staff"])
async def test_close_auction_by_seller_or_staff_ends_the_lot(ws, new_lot, bidder, seller, staff_user, closer):
    manager = seller if closer == "seller" else staff_user
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "15.00")
    manager_socket, _ = await ws.watch(lot, manager)
    watcher, _ = await ws.watch(lot, bidder)

    await manager_socket.send({"type": "CLOSE_AUCTION"})

    for socket in (manager_socket, watcher):
        ended = await socket.next()
        assert (ended["type"], ended["seq"]) == ("AUCTION_ENDED", 2)
        assert {key: ended["lot"][key] for key in ("status", "winner", "final_price")} == {
            "status": "closed",
            "winner": "Bidder 1",
            "final_price": "15.00",
        }
    again = await manager_socket.request({"type": "CLOSE_AUCTION"})
    assert (again["type"], again["code"]) == ("ERROR", "lot_closed")
    refused = await watcher.request({"type": "NEW_BID", "amount": "20.00"})
    assert (refused["type"], refused["code"]) == ("BID_REJECTED", "lot_closed")


async def test_close_auction_by_anyone_else_is_refused(ws, new_lot, bidder):
    lot = await new_lot()
    alice, _ = await ws.watch(lot, bidder)

    reply = await alice.request({"type": "CLOSE_AUCTION"})

    assert (reply["type"], reply["code"]) == ("ERROR", "not_lot_manager")
    assert reply["message"]
    assert await alice.is_open()
    assert await stored_texts(lot) == []


async def test_ping_gets_pong(ws, new_lot):
    lot = await new_lot()
    socket, _ = await ws.watch(lot)

    before = timezone.now()
    reply = await socket.request({"type": "PING"})
    after = timezone.now()

    assert reply["type"] == "PONG"
    # Read between the request and its answer (the same clock here; JSON keeps milliseconds).
    assert before - timedelta(milliseconds=1) <= parse_datetime(reply["server_time"]) <= after


# --- Reconnecting with ?since= ------------------------------------------------------


async def three_bids(new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "10.00")
    await place_bid(lot, other_bidder, "11.00")
    await place_bid(lot, bidder, "12.00")
    return lot


async def test_since_replays_the_missed_events_in_order(ws, new_lot, bidder, other_bidder):
    lot = await three_bids(new_lot, bidder, other_bidder)
    stored = await stored_texts(lot)

    socket = await ws.open(f"/ws/lots/{lot.pk}/?since=1")
    replayed = [await socket.receive(), await socket.receive()]
    assert await socket.receive() == {"type": "USERS_COUNT", "count": 1}

    assert [frame["seq"] for frame in replayed] == [2, 3]
    assert replayed == [json.loads(text) for text in stored[1:]]
    await place_bid(lot, other_bidder, "13.00")
    live = await socket.next()
    assert (live["type"], live["seq"], live["bid"]["amount"]) == ("NEW_BID", 4, "13.00")
    await socket.assert_silent()


async def test_since_up_to_date_sends_only_new_events(ws, new_lot, bidder, other_bidder):
    lot = await three_bids(new_lot, bidder, other_bidder)
    socket = await ws.open(f"/ws/lots/{lot.pk}/?since=3")

    await place_bid(lot, other_bidder, "13.00")

    live = await socket.next()
    assert (live["type"], live["seq"]) == ("NEW_BID", 4)


async def test_since_further_back_than_the_replay_limit_gets_a_fresh_status(
    ws, new_lot, bidder, other_bidder, settings
):
    settings.WS_REPLAY_LIMIT = 2
    lot = await three_bids(new_lot, bidder, other_bidder)

    socket = await ws.open(f"/ws/lots/{lot.pk}/?since=0")
    status = await socket.receive()

    assert (status["type"], status["seq"]) == ("LOT_STATUS", 3)
    assert (status["lot"]["bid_count"], status["lot"]["current_price"]) == (3, "12.00")
    assert (await socket.receive())["type"] == "USERS_COUNT"
    # Within the limit the same lot is replayed.
    recent = await ws.open(f"/ws/lots/{lot.pk}/?since=1")
    assert seqs([await recent.receive(), await recent.receive()]) == [2, 3]


async def test_unusable_since_gets_a_fresh_status(ws, new_lot, bidder, other_bidder):
    lot = await three_bids(new_lot, bidder, other_bidder)

    # "%C2%B2" is "²" and "%D9%A1" an Arabic-Indic one: isdigit() says yes to both.
    for since in ("99", "abc", "-1", "1.5", "", "%C2%B2", "%D9%A1"):
        socket = await ws.open(f"/ws/lots/{lot.pk}/?since={since}")
        status = await socket.receive()
        assert (status["type"], status["seq"]) == ("LOT_STATUS", 3), since
        assert await socket.is_open()


# --- Ordering: every watcher gets every event once, in seq order -------------------------


async def test_events_arriving_out_of_order_are_sent_in_order(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    watcher, _ = await ws.watch(lot)
    await database_sync_to_async(without_broadcast)(bid, lot, bidder, "10.00")
    await database_sync_to_async(without_broadcast)(bid, lot, other_bidder, "11.00")
    first, second = await stored_texts(lot)

    await send_to_room(lot.pk, 2, second)
    await send_to_room(lot.pk, 1, first)

    assert seqs(await watcher.events(2)) == [1, 2]
    await send_to_room(lot.pk, 1, first)  # A repeat is dropped.
    await watcher.assert_silent(0.5)


async def test_lost_broadcasts_are_filled_from_the_stored_events(ws, new_lot, bidder, other_bidder, settings):
    settings.WS_GAP_WAIT_SECONDS = 0.1
    lot = await new_lot(starting_price="10.00")
    watchers = [(await ws.watch(lot))[0], (await ws.watch(lot, other_bidder))[0]]
    # Two bids are committed and stored, but their broadcasts are lost.
    await database_sync_to_async(without_broadcast)(bid, lot, bidder, "10.00")
    await database_sync_to_async(without_broadcast)(bid, lot, other_bidder, "11.00")

    await place_bid(lot, bidder, "12.00")

    for watcher in watchers:
        received = await watcher.events(3)
        assert seqs(received) == [1, 2, 3]
        assert [frame["bid"]["amount"] for frame in received] == ["10.00", "11.00", "12.00"]
        await watcher.assert_silent()


async def test_a_gap_waits_for_the_late_event_before_reading_the_database(ws, new_lot, bidder, settings):
    settings.WS_GAP_WAIT_SECONDS = 0.5
    lot = await new_lot(starting_price="10.00")
    watcher, _ = await ws.watch(lot)
    await database_sync_to_async(without_broadcast)(bid, lot, bidder, "10.00")
    (first,) = await stored_texts(lot)

    await send_to_room(lot.pk, 2, '{"type":"NEW_BID","seq":2,"note":"from the future"}')
    await watcher.assert_silent(0.2)  # Waiting: seq 1 is missing.
    await send_to_room(lot.pk, 1, first)

    one, two = await watcher.events(2)
    assert (one["seq"], one["bid"]["amount"]) == (1, "10.00")
    assert two == {"type": "NEW_BID", "seq": 2, "note": "from the future"}
    await watcher.assert_silent(0.6)


async def test_a_held_back_event_the_database_cannot_account_for_ends_in_a_fresh_status(ws, new_lot, bidder, settings):
    settings.WS_GAP_WAIT_SECONDS = 0.1
    lot = await new_lot(starting_price="10.00")
    watcher, _ = await ws.watch(lot)

    # Whatever precedes a broadcast event is stored before it is sent: here nothing is.
    await send_to_room(lot.pk, 3, '{"type":"NEW_BID","seq":3,"note":"not this lot\'s"}')

    status = await watcher.next()
    assert (status["type"], status["lot_id"], status["seq"]) == ("LOT_STATUS", lot.pk, 0)
    await place_bid(lot, bidder, "10.00")
    assert seqs([await watcher.next()]) == [1]
    await watcher.assert_silent()


async def test_a_gap_longer_than_the_replay_limit_sends_a_fresh_status(ws, new_lot, bidder, other_bidder, settings):
    settings.WS_REPLAY_LIMIT = 2
    settings.WS_GAP_WAIT_SECONDS = 0.1
    lot = await new_lot(starting_price="10.00")
    watcher, _ = await ws.watch(lot)
    for user, amount in ((bidder, "10.00"), (other_bidder, "11.00"), (bidder, "12.00")):
        await database_sync_to_async(without_broadcast)(bid, lot, user, amount)

    await place_bid(lot, other_bidder, "13.00")

    status = await watcher.next()
    assert (status["type"], status["seq"]) == ("LOT_STATUS", 4)
    assert (status["lot"]["current_price"], status["lot"]["bid_count"]) == ("13.00", 4)
    await watcher.assert_silent()
    await place_bid(lot, bidder, "14.00")
    assert (await watcher.next())["seq"] == 5


async def test_amounts_are_decimal_strings(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00", bid_increment="2.50")
    alice, _ = await ws.watch(lot, bidder)

    frames = by_type([await alice.request({"type": "NEW_BID", "amount": 10}), await alice.next()])

    assert frames["NEW_BID"]["lot"]["min_next_bid"] == "12.50"
    assert Decimal(frames["BID_ACCEPTED"]["min_next_bid"]) == Decimal("12.50")


async def test_the_bidder_is_answered_before_the_broadcast_goes_out(ws, new_lot, bidder, monkeypatch):
    """As under `manage.py serve`: a slow broadcast delays the room, never the bidder's answer."""
    lot = await new_lot(starting_price="10.00")
    watcher, _ = await ws.watch(lot)
    bidding, _ = await ws.watch(lot, bidder)
    release = asyncio.Event()
    publish_async = fanout.publish_async

    async def held_publish(items):
        await release.wait()
        await publish_async(items)

    def publish_from_thread(items):
        raise AssertionError("the bid's thread sent its broadcast itself")

    monkeypatch.setattr(fanout, "publish_async", held_publish)
    monkeypatch.setattr(fanout, "publish", publish_from_thread)
    events.post_broadcasts_from_threads(events.LoopPublisher(asyncio.get_running_loop()))
    try:
        accepted = await bidding.request({"type": "NEW_BID", "amount": "10.00", "request_id": "r1"})
        assert (accepted["type"], accepted["lot"]["seq"]) == ("BID_ACCEPTED", 1)
        await watcher.assert_silent()
        release.set()
        new_bid = await watcher.next()
        assert (new_bid["type"], new_bid["seq"], new_bid["bid"]["id"]) == ("NEW_BID", 1, accepted["bid"]["id"])
    finally:
        events.post_broadcasts_from_threads(None)


async def test_bids_arriving_while_a_batch_is_in_the_database_wait_together_for_the_next(
    ws, new_lot, bidder, other_bidder, third_bidder, monkeypatch
):
    lot = await new_lot(starting_price="10.00")
    sockets = [(await ws.watch(lot, user))[0] for user in (bidder, other_bidder, third_bidder)]
    batches: list[list[str]] = []
    first_in, release = asyncio.Event(), asyncio.Event()
    place_bids = bid_batches._place_bids

    async def observed(**kwargs):
        batches.append([str(request.amount) for request in kwargs["requests"]])
        if len(batches) == 1:
            first_in.set()
            await release.wait()
        return await place_bids(**kwargs)

    monkeypatch.setattr(bid_batches, "_place_bids", observed)
    await sockets[0].send({"type": "NEW_BID", "amount": "10.00", "request_id": "r0"})
    await asyncio.wait_for(first_in.wait(), TIMEOUT)
    await sockets[1].send({"type": "NEW_BID", "amount": "11.00", "request_id": "r1"})
    await sockets[2].send({"type": "NEW_BID", "amount": "12.00", "request_id": "r2"})
    queue = bid_batches.lot_bids(lot.pk)
    async with asyncio.timeout(TIMEOUT):
        while len(queue.waiting) < 2:
            await asyncio.sleep(0.01)
    release.set()

    answers = []
    for socket in sockets:
        while (frame := await socket.next())["type"] != "BID_ACCEPTED":
            pass
        answers.append((frame["request_id"], frame["lot"]["seq"], frame["leading"]))
    # The two that waited went to the database together, in arrival order, each answered as if alone.
    assert batches == [["10.00"], ["11.00", "12.00"]]
    assert answers == [("r0", 1, True), ("r1", 2, True), ("r2", 3, True)]
