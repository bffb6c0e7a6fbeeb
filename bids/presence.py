"""Who is watching each lot, counted across every server process.

With Redis, each lot has a sorted set of channel names scored by when the
entry lapses; each process refreshes its own entries, so a process that
dies (even by `kill -9`) stops being counted within `PRESENCE_TTL_SECONDS`
and nothing accumulates. Without Redis there is one process, so a set in
memory is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import defaultdict

from django.conf import settings

logger = logging.getLogger(__name__)

PRESENCE_TTL_SECONDS = 60
REFRESH_EVERY_SECONDS = 20
# At most one USERS_COUNT per room per process in this time: a count sent to
# every watcher on every join is O(watchers²) frames while a room fills.
PRESENCE_BROADCAST_INTERVAL_SECONDS = 0.25


class MemoryPresence:
    def __init__(self) -> None:
        self.members: dict[str, set[str]] = defaultdict(set)

    async def join(self, room: str, channel: str) -> int:
        self.members[room].add(channel)
        return len(self.members[room])

    def forget(self, room: str, channel: str) -> None:
        """Drop the channel at once, without I/O (a socket whose consumer was cancelled)."""
        self.members[room].discard(channel)
        if not self.members[room]:
            self.members.pop(room, None)

    async def leave(self, room: str, channel: str) -> int:
        self.forget(room, channel)
        return len(self.members.get(room, ()))

    async def count(self, room: str) -> int:
        return len(self.members.get(room, ()))


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        from auction_site.channel_layer import blocking_pool

        # A burst of joins waits for a free connection instead of failing past the pool's size.
        self.redis = redis.Redis(connection_pool=blocking_pool(url))
        self.local: dict[str, set[str]] = defaultdict(set)
        self.refresher: asyncio.Task | None = None

    @staticmethod
    def key(room: str) -> str:
        return f"presence:{room}"

    async def _count(self, pipe, room: str) -> int:
        now = time.time()
        pipe.zremrangebyscore(self.key(room), "-inf", now)
        pipe.zcard(self.key(room))
        pipe.expire(self.key(room), PRESENCE_TTL_SECONDS * 2)
        results = await pipe.execute()
        return int(results[-2])

    async def join(self, room: str, channel: str) -> int:
        """Count the channel in; if that fails (Redis away, or the caller cancelled), it is not counted.

        Only a join that returned is refreshed: an entry kept for a failed one
        would be written back once Redis returns, a socket counted forever
        that never opened.
        """
        self.local[room].add(channel)
        self._ensure_refresher()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(self.key(room), {channel: time.time() + PRESENCE_TTL_SECONDS})
                return await self._count(pipe, room)
        except BaseException:
            # Whatever reached Redis lapses within PRESENCE_TTL_SECONDS.
            self.forget(room, channel)
            raise

    def forget(self, room: str, channel: str) -> None:
        """Stop refreshing the channel's entry, without I/O: it lapses within PRESENCE_TTL_SECONDS."""
        self.local[room].discard(channel)
        if not self.local[room]:
            self.local.pop(room, None)

    async def leave(self, room: str, channel: str) -> int:
        self.forget(room, channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.key(room), channel)
            return await self._count(pipe, room)

    async def count(self, room: str) -> int:
        async with self.redis.pipeline(transaction=True) as pipe:
            return await self._count(pipe, room)

    def _ensure_refresher(self) -> None:
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while self.local:
            await asyncio.sleep(REFRESH_EVERY_SECONDS)
            lapse = time.time() + PRESENCE_TTL_SECONDS
            with contextlib.suppress(Exception):  # Redis away: entries lapse, counts recover on return.
                async with self.redis.pipeline(transaction=False) as pipe:
                    for room, channels in list(self.local.items()):
                        if channels:
                            pipe.zadd(self.key(room), dict.fromkeys(channels, lapse))
                    await pipe.execute()


class PresenceAnnouncer:
    """Sends a room's watcher count to the room, at most once per interval, always ending with the latest count.

    The first change after a quiet interval is sent at once with the count it
    produced; changes within the interval are folded into one send at its end,
    which reads the count when it goes out, so the last change is never lost.
    """

    def __init__(self, presence: MemoryPresence | RedisPresence, interval: float) -> None:
        self.presence, self.interval = presence, interval
        self.last_sent: dict[str, float] = {}
        self.scheduled: dict[str, asyncio.Task] = {}

    async def announce(self, layer, room: str, count: int) -> None:
        if room in self.scheduled:
            return  # The scheduled send reads the count when it goes out.
        loop = asyncio.get_running_loop()
        wait = self.last_sent.get(room, -self.interval) + self.interval - loop.time()
        if wait > 0:
            self.scheduled[room] = loop.create_task(self._send_later(layer, room, wait))
            return
        self._sent(room)
        await layer.group_send(room, {"type": "lot.presence", "count": count})

    def _sent(self, room: str) -> None:
        loop = asyncio.get_running_loop()
        sent_at = self.last_sent[room] = loop.time()
        # Forget quiet rooms, so the map holds only the rooms of the last interval.
        loop.call_later(self.interval, self._forget, room, sent_at)

    def _forget(self, room: str, sent_at: float) -> None:
        if self.last_sent.get(room) == sent_at:
            del self.last_sent[room]

    async def _send_later(self, layer, room: str, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
        finally:
            del self.scheduled[room]
        self._sent(room)
        try:
            count = await self.presence.count(room)
            await layer.group_send(room, {"type": "lot.presence", "count": count})
        except Exception:  # Redis away: the next join or leave sends a fresh count.
            logger.warning("watcher count of %s not sent", room, exc_info=True)


# Keyed by the loop itself: a new loop may reuse a closed one's id().
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MemoryPresence | RedisPresence] = (
    weakref.WeakKeyDictionary()
)
_announcers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PresenceAnnouncer] = weakref.WeakKeyDictionary()


def get_presence() -> MemoryPresence | RedisPresence:
    """One tracker per event loop (a Redis client belongs to its loop)."""
    loop = asyncio.get_running_loop()
    tracker = _by_loop.get(loop)
    if tracker is None:
        tracker = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else MemoryPresence()
        _by_loop[loop] = tracker
    return tracker


def get_announcer() -> PresenceAnnouncer:
    """One announcer per event loop, over that loop's presence tracker."""
    loop = asyncio.get_running_loop()
    announcer = _announcers.get(loop)
    if announcer is None:
        announcer = PresenceAnnouncer(get_presence(), PRESENCE_BROADCAST_INTERVAL_SECONDS)
        _announcers[loop] = announcer
    return announcer
