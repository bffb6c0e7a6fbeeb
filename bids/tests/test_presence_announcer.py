"""bids.presence.PresenceAnnouncer: watcher counts coalesced per room, never losing the last one."""

import asyncio

from channels.layers import InMemoryChannelLayer

from bids.presence import MemoryPresence, PresenceAnnouncer

INTERVAL = 0.2
# A count that must come; generous for a loaded machine.
ARRIVES_WITHIN = 30


async def counts_received(layer, channel: str, expect: int) -> list[int]:
    """The `expect` counts that must reach `channel`, then any more that arrive within 3 intervals.

    The wait for the expected ones is long: a busy machine may run the
    interval's scheduled send late. The watch for extras is short, which is
    safe (one arriving later passes unseen) and leaves the room quiet after it.
    """
    counts = []
    for _ in range(expect):
        counts.append((await asyncio.wait_for(layer.receive(channel), ARRIVES_WITHIN))["count"])
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), 3 * INTERVAL)
        except TimeoutError:
            return counts
        counts.append(message["count"])


async def test_a_burst_of_joins_sends_the_first_count_at_once_and_the_last_one_after_the_interval():
    layer, presence = InMemoryChannelLayer(), MemoryPresence()
    announcer = PresenceAnnouncer(presence, INTERVAL)
    watcher = await layer.new_channel()
    await layer.group_add("lot.1", watcher)

    for n in range(50):
        await announcer.announce(layer, "lot.1", await presence.join("lot.1", f"channel-{n}"))

    # Without coalescing every join would send one count: 50 frames to each of 50 watchers.
    assert await counts_received(layer, watcher, expect=2) == [1, 50]


async def test_a_change_after_a_quiet_interval_goes_out_at_once_and_leaves_are_counted():
    layer, presence = InMemoryChannelLayer(), MemoryPresence()
    announcer = PresenceAnnouncer(presence, INTERVAL)
    watcher = await layer.new_channel()
    await layer.group_add("lot.1", watcher)
    await announcer.announce(layer, "lot.1", await presence.join("lot.1", "a"))
    await announcer.announce(layer, "lot.1", await presence.join("lot.1", "b"))
    assert await counts_received(layer, watcher, expect=2) == [1, 2]

    await announcer.announce(layer, "lot.1", await presence.leave("lot.1", "b"))
    # Sent before announce returns: the room was quiet, so there is nothing to wait for.
    assert (await asyncio.wait_for(layer.receive(watcher), 0.01))["count"] == 1
    assert await counts_received(layer, watcher, expect=0) == []


async def test_rooms_are_coalesced_separately_and_forgotten_once_quiet():
    layer, presence = InMemoryChannelLayer(), MemoryPresence()
    announcer = PresenceAnnouncer(presence, INTERVAL)
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("lot.1", first)
    await layer.group_add("lot.2", second)

    for n in range(3):
        await announcer.announce(layer, "lot.1", await presence.join("lot.1", f"a{n}"))
        await announcer.announce(layer, "lot.2", await presence.join("lot.2", f"b{n}"))

    assert await counts_received(layer, first, expect=2) == [1, 3]
    assert await counts_received(layer, second, expect=2) == [1, 3]
    await asyncio.sleep(2 * INTERVAL)
    assert announcer.last_sent == {} and announcer.scheduled == {}
