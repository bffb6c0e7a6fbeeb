"""bids.presence: who watches a lot, per event loop in memory, across processes with Redis."""

import asyncio
import contextlib
import gc

import pytest
from prometheus_client import REGISTRY

from bids.events import lot_group
from bids.presence import MemoryPresence, get_presence


async def join_and_count(room: str, channel: str) -> tuple[object, int]:
    tracker = get_presence()
    return tracker, await tracker.join(room, channel)


def test_a_new_event_loop_never_inherits_a_closed_loops_tracker(settings):
    """Loops die with every test or thread; a new one often gets a dead one's id()."""
    settings.REDIS_URL = ""
    trackers: dict[int, object] = {}
    reused = False
    for attempt in range(10):
        loop = asyncio.new_event_loop()
        try:
            tracker, count = loop.run_until_complete(join_and_count("lot.1", f"channel-{attempt}"))
        finally:
            loop.close()
        assert isinstance(tracker, MemoryPresence)
        # A fresh loop has a fresh room: the channel that never left died with its loop.
        assert count == 1
        reused = reused or id(loop) in trackers
        assert trackers.get(id(loop)) is not tracker
        trackers[id(loop)] = tracker
        del loop
        gc.collect()
    if not reused:
        pytest.skip("the interpreter never reused a loop's id(); nothing to check")


async def test_memory_presence_counts_joins_and_leaves():
    presence = MemoryPresence()

    assert [await presence.join("lot.1", name) for name in ("a", "b", "a")] == [1, 2, 2]
    assert await presence.join("lot.2", "c") == 1
    assert await presence.leave("lot.1", "a") == 1
    assert await presence.leave("lot.1", "b") == 0
    assert "lot.1" not in presence.members


@pytest.mark.django_db(transaction=True)
async def test_a_consumer_the_server_cancels_leaves_the_gauge_and_stops_its_presence(ws, new_lot):
    # daphne cancels an application still running application_close_timeout after its
    # socket closed (one stuck on an unreachable Redis): no disconnect() runs then.
    lot = await new_lot()
    open_before = open_lot_sockets()
    socket, _status = await ws.watch(lot)
    presence = get_presence()
    tracked = presence.members if isinstance(presence, MemoryPresence) else presence.local
    assert len(tracked[lot_group(lot.pk)]) == 1
    assert open_lot_sockets() == open_before + 1

    socket.communicator.future.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await socket.communicator.future

    assert open_lot_sockets() == open_before
    # No longer refreshed here: with Redis its entry lapses within the presence TTL.
    assert not tracked.get(lot_group(lot.pk))


def open_lot_sockets() -> float:
    return REGISTRY.get_sample_value("auction_websockets_open", {"consumer": "LotConsumer"}) or 0
