"""The Redis channel layer, with a connection pool that waits instead of failing
and no memory kept for the channels of closed sockets.

redis-py (8.x) caps a pool at 100 connections and raises `MaxConnectionsError`
("Too many connections") on the 101st concurrent command. A burst of joins or
leaves (every socket runs group_add/group_discard) past that many at once then
failed the sockets themselves. Here the pool holds the same number of
connections but a command past it waits for a free one.

channels_redis buffers each message for a process-local channel in a queue per
channel, which it drops when that channel's receive is cancelled, except for the
receive that held its receive lock; and a message that arrives later (sent to a
group just before the socket left it) creates a new queue that nothing ever
reads or drops. So sockets that closed left queues behind. Consumers now say
when their channel is gone (`forget_channel`): late messages are dropped, and
what is left of a gone channel is dropped once its messages have expired.
"""

from __future__ import annotations

import collections
import time

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool

POOL_SIZE = 100
POOL_WAIT_SECONDS = 10


def blocking_pool(url: str, **options) -> BlockingConnectionPool:
    """A pool of at most POOL_SIZE connections to `url`; a command past it waits up to POOL_WAIT_SECONDS."""
    return BlockingConnectionPool.from_url(url, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS, **options)


class _ReceiveBuffer(collections.defaultdict):
    """channels_redis' per-channel message queues, holding none for a channel whose consumer has gone."""

    def __init__(self, factory, gone: dict[str, float]) -> None:
        super().__init__(factory)
        self.gone = gone

    def __missing__(self, channel: str):
        if channel in self.gone:
            return self.default_factory()  # Kept by nobody: the late message is dropped.
        return super().__missing__(channel)


class WaitingRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Closed channels by when they closed, oldest first; a message for one
        # can arrive until it expires in Redis (`expiry`), so they are kept that long.
        self.gone: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.receive_buffer = _ReceiveBuffer(self.receive_buffer.default_factory, self.gone)

    def forget_channel(self, channel: str) -> None:
        """The consumer of `channel` has stopped: messages that still arrive for it are dropped."""
        now = time.monotonic()
        self.gone[channel] = now
        while self.gone and next(iter(self.gone.values())) < now - self.expiry:
            expired, _ = self.gone.popitem(last=False)
            # The receive that held the layer's receive lock leaves its queue behind
            # when cancelled; long after, nothing can use it.
            self.receive_buffer.pop(expired, None)

    def create_pool(self, index: int) -> BlockingConnectionPool:
        options = dict(self.hosts[index])
        if "address" not in options:  # Sentinel hosts: channels_redis' own pool.
            return super().create_pool(index)
        return blocking_pool(options.pop("address"), **options)
