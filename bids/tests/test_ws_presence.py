"""bids.presence: who watches a lot, per event loop in memory, across processes with Redis."""

import asyncio
import gc

import pytest

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
