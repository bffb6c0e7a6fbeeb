"""The Redis channel layer and presence under a burst of concurrent joins (more than a pool's connections)."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from auction_site.channel_layer import POOL_SIZE, WaitingRedisChannelLayer
from bids.presence import RedisPresence
from bids.tests.ws import release_channel_layer

pytestmark = pytest.mark.services

# Past redis-py's cap of connections per pool, which used to fail with "Too many connections".
BURST = 3 * POOL_SIZE


async def test_a_burst_of_group_joins_past_the_pool_size_waits_instead_of_failing():
    layer = get_channel_layer()
    group = "bench.burst"
    channels = [await layer.new_channel() for _ in range(BURST)]
    try:
        await asyncio.gather(*(layer.group_add(group, channel) for channel in channels))
        await layer.group_send(group, {"type": "burst.hello"})
        received = await asyncio.gather(*(asyncio.wait_for(layer.receive(c), 10) for c in channels[:5]))
        assert [m["type"] for m in received] == ["burst.hello"] * 5
    finally:
        await asyncio.gather(*(layer.group_discard(group, channel) for channel in channels))
        await release_channel_layer()


async def test_a_burst_of_presence_joins_past_the_pool_size_counts_every_watcher():
    presence = RedisPresence(settings.REDIS_URL)
    room = "lot.burst"
    await presence.redis.delete(presence.key(room))
    try:
        counts = await asyncio.gather(*(presence.join(room, f"channel-{n}") for n in range(BURST)))
        assert sorted(counts)[-1] == BURST
        assert await presence.count(room) == BURST
        await asyncio.gather(*(presence.leave(room, f"channel-{n}") for n in range(BURST)))
        assert await presence.count(room) == 0
    finally:
        await presence.redis.delete(presence.key(room))
        await presence.redis.aclose()


async def test_nothing_is_kept_for_the_channels_of_closed_sockets():
    """Late group messages, and the queue of the receive that held the lock, used to stay buffered forever."""
    expiry = 1
    layer = WaitingRedisChannelLayer(hosts=[settings.REDIS_URL], expiry=expiry)
    group = "bench.closed"
    alive = await layer.new_channel()
    closed = [await layer.new_channel() for _ in range(20)]
    try:
        for channel in [*closed, alive]:
            await layer.group_add(group, channel)
        receiving = [asyncio.create_task(layer.receive(channel)) for channel in closed]
        alive_receives = asyncio.create_task(layer.receive(alive))
        await asyncio.sleep(0.2)
        for channel, task in zip(closed, receiving, strict=True):  # The sockets close, as a consumer does.
            layer.forget_channel(channel)
            task.cancel()
        await asyncio.gather(*receiving, return_exceptions=True)

        # Sent before they left the group: it still reaches their channels after they stopped receiving.
        await layer.group_send(group, {"type": "burst.hello"})
        assert (await asyncio.wait_for(alive_receives, 30))["type"] == "burst.hello"
        await asyncio.sleep(expiry + 0.2)
        layer.forget_channel(await layer.new_channel())  # Any later close sweeps the expired ones.

        assert [channel for channel in closed if channel in layer.receive_buffer] == []
    finally:
        for channel in [*closed, alive]:
            await layer.group_discard(group, channel)
        await layer.close_pools()
