"""A lot socket in its process's fan-out: counted while it watches, out of every room however it ends."""

import asyncio
import contextlib

import pytest
from prometheus_client import REGISTRY

from lots.events import lot_group
from realtime import fanout
from testsupport.ws import forget_presence


@pytest.mark.django_db(transaction=True)
async def test_a_consumer_the_server_cancels_leaves_the_gauge_and_its_rooms(ws, new_lot):
    # daphne cancels an application still running application_close_timeout after its
    # socket closed (one stuck on an unreachable Redis): no disconnect() runs then.
    lot = await new_lot()
    open_before = open_lot_sockets()
    socket, _status = await ws.watch(lot)
    room = fanout.get_hub().rooms[lot_group(lot.pk)]
    assert (len(room.members), room.counted) == (1, 1)
    assert open_lot_sockets() == open_before + 1

    socket.communicator.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await socket.communicator.future

    assert open_lot_sockets() == open_before
    # Out of the room and no longer counted: with Redis, the count published next says so.
    assert (len(room.members), room.counted) == (0, 0)


@pytest.mark.django_db(transaction=True)
async def test_watchers_are_counted_once_they_have_the_lots_state_and_leave_the_count_when_they_close(ws, new_lot):
    lot = await new_lot()
    await forget_presence(lot)
    first, _ = await ws.watch(lot)  # Its own count (1) read by watch().
    second, _ = await ws.watch(lot)

    assert await next_count(first) == 2
    await second.communicator.disconnect()
    assert await next_count(first) == 1
    assert fanout.get_hub().rooms[lot_group(lot.pk)].counted == 1


async def next_count(socket) -> int:
    while True:
        frame = await socket.receive()
        if frame["type"] == "USERS_COUNT":
            return frame["count"]


def open_lot_sockets() -> float:
    return REGISTRY.get_sample_value("auction_websockets_open", {"consumer": "LotConsumer"}) or 0


@pytest.mark.django_db(transaction=True)
async def test_an_idle_socket_schedules_nothing_and_runs_no_task_of_its_own(ws, new_lot, bidder):
    """Nothing periodic per socket: no re-join, no refresh, no timer but a logged-in socket's one for its token."""
    lot = await new_lot()
    anonymous, _ = await ws.watch(lot)  # The room, its subscription and the hub's books exist from here.
    await anonymous.is_open()
    loop = asyncio.get_running_loop()
    tasks_before, timers_before = len(asyncio.all_tasks()), pending_timers(loop)

    for _ in range(10):
        await ws.watch(lot)
    await ws.watch(lot, bidder)
    await asyncio.sleep(0.1)  # The joins' own work (the count's announcement) has run.

    # Each socket is its application's task, nothing more (a couple more for the hub's own work).
    assert len(asyncio.all_tasks()) - tasks_before <= 11 + 2
    # The process's own (the count ticker, the subscription's read and ping, the heartbeat) may have
    # moved on; per socket, only the logged-in socket's token expiry: a few, never one per socket.
    assert pending_timers(loop) - timers_before <= 4


def pending_timers(loop) -> int:
    return sum(not handle.cancelled() for handle in loop._scheduled)
