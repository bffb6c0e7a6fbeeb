"""Two real `manage.py serve` processes share PostgreSQL and Redis: every watcher on either gets every event, in order."""

import asyncio
import json
from contextlib import AsyncExitStack

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect

from conftest import access_token_for
from lots.models import LotEvent
from testsupport.live_servers import database_url_for_tests, live_servers, request
from testsupport.ws import forget_presence

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# A frame that must come; generous for a loaded machine.
RECEIVE_TIMEOUT = 30
# Longer than the fan-out's ping interval (realtime.fanout.PING_INTERVAL_SECONDS, 5 s), in which an idle
# pub/sub connection reads nothing: an idle socket has to stay open through it.
IDLE_SECONDS = 5.5


async def next_frame(socket: ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), RECEIVE_TIMEOUT))


async def frames_until(socket: ClientConnection, seq: int) -> list[dict]:
    """Every frame up to and including the room event numbered `seq`."""
    frames = []
    while not frames or frames[-1].get("seq") != seq:
        try:
            frames.append(await next_frame(socket))
        except TimeoutError:
            raise AssertionError(f"no event {seq} within {RECEIVE_TIMEOUT} s; got {frames}") from None
    return frames


@database_sync_to_async  # Hands its connection back: the test database is dropped at the end.
def stored_events(lot) -> list[dict]:
    return [
        json.loads(text) for text in LotEvent.objects.filter(lot=lot).order_by("seq").values_list("text", flat=True)
    ]


async def test_watchers_on_two_servers_get_every_event_in_order(make_lot, bidder, other_bidder, seller):
    lot = await database_sync_to_async(make_lot)(starting_price="10.00")
    alice, bob, sam = [await database_sync_to_async(access_token_for)(user) for user in (bidder, other_bidder, seller)]
    await forget_presence(lot)

    env = {"DATABASE_URL": database_url_for_tests(), "REDIS_URL": settings.REDIS_URL}
    with live_servers(2, env=env) as (first, second):
        async with AsyncExitStack() as stack:

            async def watch(server: str, token: str | None = None) -> ClientConnection:
                url = server.replace("http", "ws", 1) + f"/ws/lots/{lot.pk}/" + (f"?token={token}" if token else "")
                socket = await stack.enter_async_context(connect(url, origin="http://localhost", proxy=None))
                status = await next_frame(socket)
                assert (status["type"], status["seq"]) == ("LOT_STATUS", 0), status
                return socket

            on_first = [await watch(first), await watch(first), await watch(first, alice)]
            on_second = [await watch(second), await watch(second), await watch(second, bob)]
            watchers = on_first + on_second
            bob_socket = on_second[-1]
            await asyncio.sleep(IDLE_SECONDS)

            async def rest_bid(amount: str, **extra) -> dict:
                status, body = await asyncio.to_thread(
                    request, "POST", f"{first}/api/lots/{lot.pk}/bids/", token=alice, data={"amount": amount, **extra}
                )
                assert status == 201, body
                return body

            bob_frames: list[dict] = []

            async def socket_bid(amount: str, request_id: str) -> dict:
                """Bob bids on the second server; his socket's frames are kept for the check below."""
                await bob_socket.send(json.dumps({"type": "NEW_BID", "amount": amount, "request_id": request_id}))
                while True:
                    bob_frames.append(await next_frame(bob_socket))
                    if bob_frames[-1].get("request_id") == request_id:
                        return bob_frames[-1]

            await rest_bid("10.00")  # seq 1
            assert (await socket_bid("11.00", "bob-1"))["type"] == "BID_ACCEPTED"  # seq 2
            await rest_bid("12.00", max_amount="20.00")  # seq 3
            beaten = await socket_bid("13.00", "bob-2")  # seq 4, and alice's proxy at 13.50: seq 5
            assert (beaten["type"], beaten["leading"]) == ("BID_ACCEPTED", False)
            status, body = await asyncio.to_thread(request, "POST", f"{second}/api/lots/{lot.pk}/close/", token=sam)
            assert status == 200, body  # seq 6

            received = []
            for socket in watchers:
                frames = bob_frames if socket is bob_socket else []
                if not frames or frames[-1].get("seq") != 6:
                    frames = frames + await frames_until(socket, 6)
                received.append(frames)

        # Still inside live_servers: a failure shows what the servers logged.
        stored = await stored_events(lot)
        assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5, 6]
        assert [e["type"] for e in stored] == ["NEW_BID"] * 5 + ["AUCTION_ENDED"]
        assert [(e["bid"]["bidder"], e["bid"]["amount"], e["bid"]["is_proxy"]) for e in stored[:5]] == [
            ("Bidder 1", "10.00", False),  # alice
            ("Bidder 2", "11.00", False),  # bob
            ("Bidder 1", "12.00", False),
            ("Bidder 2", "13.00", False),
            ("Bidder 1", "13.50", True),
        ]
        for where, frames in zip(["first"] * 3 + ["second"] * 3, received, strict=True):
            events = [f for f in frames if "seq" in f]
            assert events == stored, f"a watcher on the {where} server got {[e['seq'] for e in events]}"
            counts = [f["count"] for f in frames if f["type"] == "USERS_COUNT"]
            # Presence is counted across both processes: the last of six joins says six.
            assert counts and max(counts) == 6, f"a watcher on the {where} server saw counts {counts}"
