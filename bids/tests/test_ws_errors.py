"""Bad input on a lot's socket: an ERROR with a code, the socket stays open, nothing is stored."""

import json
from types import SimpleNamespace

import pytest
from channels.db import database_sync_to_async

from bids.models import Bid
from lots.models import LotEvent
from lots.services import delete_lot
from realtime.consumers import base as consumers

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored(lot) -> tuple[int, int]:
    """(bids, events) stored for the lot."""
    return Bid.objects.filter(lot=lot).count(), LotEvent.objects.filter(lot=lot).count()


async def assert_error(socket, text: str, code: str) -> dict:
    await socket.send_text(text)
    reply = await socket.next()
    assert reply["type"] == "ERROR", f"{text[:60]!r} got {reply}"
    assert reply["code"] == code, f"{text[:60]!r} got {reply}"
    assert reply["message"], reply
    return reply


async def test_frames_that_are_not_json_objects_with_a_type(ws, new_lot, bidder):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)
    cases = {
        "not json": "invalid_json",
        '{"type": "PING"': "invalid_json",
        "[" * 2000 + "]" * 2000: "invalid_json",  # Nested past the parser's recursion limit.
        "[1, 2]": "invalid_message",
        '"PING"': "invalid_message",
        "42": "invalid_message",
        "null": "invalid_message",
        "{}": "invalid_message",
        '{"type": 5}': "invalid_message",
        '{"type": null}': "invalid_message",
        '{"type": "DANCE"}': "unknown_type",
        '{"type": "ping"}': "unknown_type",
        '{"type": "LOT_STATUS"}': "unknown_type",
    }

    for text, code in cases.items():
        await assert_error(socket, text, code)
    await socket.send_bytes(b'{"type": "PING"}')
    binary = await socket.next()

    assert (binary["type"], binary["code"]) == ("ERROR", "binary_not_supported")
    assert await socket.is_open()


async def test_malformed_amounts_are_refused_and_nothing_is_stored(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    yen_lot = await new_lot(starting_price="100", currency="JPY")
    socket, _ = await ws.watch(lot, bidder)
    watcher, _ = await ws.watch(lot, other_bidder)
    amounts = [
        "-5",
        "0",
        '"0.00"',
        '"-1.00"',
        "NaN",
        "Infinity",
        "-Infinity",
        '"NaN"',
        '"Infinity"',
        '"sNaN"',
        "1e400",
        '"1e400"',
        "10.001",
        '"10.001"',
        "1e12",
        '"10000000000.00"',
        "9" * 45,
        '"abc"',
        '""',
        "null",
        "true",
        "[]",
        '{"value": 10}',
    ]

    await assert_error(socket, '{"type": "NEW_BID"}', "invalid_amount")
    for amount in amounts:
        reply = await assert_error(
            socket, f'{{"type": "NEW_BID", "amount": {amount}, "request_id": "r"}}', "invalid_amount"
        )
        assert reply["request_id"] == "r"
    for max_amount in ('"15.00"', "NaN", '"-20"', '"20.001"'):
        await assert_error(
            socket, f'{{"type": "NEW_BID", "amount": "20.00", "max_amount": {max_amount}}}', "invalid_amount"
        )
    yen = await ws.open(f"/ws/lots/{yen_lot.pk}/", user=bidder)
    assert (await yen.receive())["type"] == "LOT_STATUS"
    await assert_error(yen, '{"type": "NEW_BID", "amount": "100.50"}', "invalid_amount")

    assert await socket.is_open()
    assert await stored(lot) == (0, 0)
    assert await stored(yen_lot) == (0, 0)
    await watcher.assert_silent()


async def test_bad_request_ids_are_refused(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00", buy_now_price="50.00")
    socket, _ = await ws.watch(lot, bidder)

    for request_id in ('""', json.dumps("x" * 101), "123", '["a"]', "{}", "true"):
        await assert_error(
            socket, f'{{"type": "NEW_BID", "amount": "10.00", "request_id": {request_id}}}', "invalid_request_id"
        )
        await assert_error(socket, f'{{"type": "BUY_NOW", "request_id": {request_id}}}', "invalid_request_id")
    assert await stored(lot) == (0, 0)

    longest = await socket.request({"type": "NEW_BID", "amount": "10.00", "request_id": "x" * 100})
    assert (longest["type"], longest["request_id"]) == ("BID_ACCEPTED", "x" * 100)


async def test_bad_history_limits_are_refused(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00")
    socket, _ = await ws.watch(lot)

    for limit in ("0", "101", "-1", '"5"', "true", "1.5", "null", "[]"):
        await assert_error(socket, f'{{"type": "GET_HISTORY", "limit": {limit}}}', "invalid_limit")

    for limit in (1, 100):
        reply = await socket.request({"type": "GET_HISTORY", "limit": limit})
        assert reply == {"type": "BID_HISTORY", "bids": []}


async def test_too_many_messages_are_rate_limited(ws, new_lot, settings, monkeypatch):
    settings.WS_MESSAGES_PER_SECOND = 2
    settings.WS_MESSAGE_BURST = 3
    # The consumers' clock stands still unless the test moves it: no token comes back while a
    # busy machine is slow to handle the five frames.
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(consumers, "time", SimpleNamespace(monotonic=lambda: clock.now))
    lot = await new_lot()
    socket, _ = await ws.watch(lot)

    for _ in range(5):
        await socket.send({"type": "PING"})
    replies = [await socket.next() for _ in range(5)]

    assert [r["type"] for r in replies] == ["PONG", "PONG", "PONG", "ERROR", "ERROR"]
    assert {r.get("code") for r in replies[3:]} == {"rate_limited"}
    assert (await socket.request({"type": "PING"}))["code"] == "rate_limited"  # Still none back.
    clock.now += 0.5  # A token comes back every 0.5 s.
    assert await socket.is_open()
    assert (await socket.request({"type": "PING"}))["code"] == "rate_limited"  # One token, used.


async def test_a_frame_over_the_size_limit_closes_with_4009(ws, new_lot, settings):
    settings.WS_MAX_MESSAGE_BYTES = 200
    lot = await new_lot()
    socket, _ = await ws.watch(lot)
    frame = '{"type": "PING", "pad": "%s"}'
    at_limit = frame % ("x" * (200 - len(frame % "")))
    # 150 characters, but 300 bytes in UTF-8: the limit is in bytes.
    over = frame % ("é" * 150)

    await socket.send_text(at_limit)
    assert (await socket.next())["type"] == "PONG"
    await socket.send_text(over)

    assert await socket.close_code() == 4009


async def test_a_binary_frame_over_the_size_limit_closes_with_4009_too(ws, new_lot, settings):
    settings.WS_MAX_MESSAGE_BYTES = 200
    lot = await new_lot()
    socket, _ = await ws.watch(lot)

    await socket.send_bytes(b"x" * 201)

    assert await socket.close_code() == 4009


async def test_bidding_on_a_lot_deleted_meanwhile_is_an_error(ws, new_lot, bidder, seller):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)
    await database_sync_to_async(delete_lot)(lot_id=lot.pk, actor=seller)

    for frame in ({"type": "NEW_BID", "amount": "10.00"}, {"type": "BUY_NOW"}, {"type": "CLOSE_AUCTION"}):
        reply = await socket.request(frame)
        assert (reply["type"], reply["code"]) == ("ERROR", "lot_not_found"), frame

    assert await socket.is_open()


# Decimal() takes each of these; money text takes ASCII digits, one `.` and at most two decimals.
NOT_PLAIN_AMOUNTS = ["\u0663\u0660", "\uff13\uff10", "1_000", "+15", " 20 ", "20 ", "1e3", "20.", ".5", "20.500"]


async def test_amounts_in_any_but_the_plain_format_are_refused(ws, new_lot, bidder):
    lot = await new_lot(starting_price="10.00")
    socket, _ = await ws.watch(lot, bidder)

    for amount in NOT_PLAIN_AMOUNTS:
        await assert_error(socket, json.dumps({"type": "NEW_BID", "amount": amount}), "invalid_amount")
        await assert_error(
            socket, json.dumps({"type": "NEW_BID", "amount": "20.00", "max_amount": amount}), "invalid_amount"
        )

    assert await stored(lot) == (0, 0)
    await socket.send({"type": "NEW_BID", "amount": "30"})
    accepted = await socket.next()
    assert (accepted["type"], accepted["bid"]["amount"]) == ("BID_ACCEPTED", "30.00")
