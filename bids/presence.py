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
import time
import weakref
from collections import defaultdict

from django.conf import settings

PRESENCE_TTL_SECONDS = 60
REFRESH_EVERY_SECONDS = 20


class MemoryPresence:
    def __init__(self) -> None:
        self.members: dict[str, set[str]] = defaultdict(set)

    async def join(self, room: str, channel: str) -> int:
        self.members[room].add(channel)
        return len(self.members[room])

    async def leave(self, room: str, channel: str) -> int:
        self.members[room].discard(channel)
        count = len(self.members[room])
        if not count:
            self.members.pop(room, None)
        return count


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.redis = redis.Redis.from_url(url)
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
        self.local[room].add(channel)
        self._ensure_refresher()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key(room), {channel: time.time() + PRESENCE_TTL_SECONDS})
            return await self._count(pipe, room)

    async def leave(self, room: str, channel: str) -> int:
        self.local[room].discard(channel)
        if not self.local[room]:
            self.local.pop(room, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.key(room), channel)
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


# Keyed by the loop itself: a new loop may reuse a closed one's id().
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MemoryPresence | RedisPresence] = (
    weakref.WeakKeyDictionary()
)


def get_presence() -> MemoryPresence | RedisPresence:
    """One tracker per event loop (a Redis client belongs to its loop)."""
    loop = asyncio.get_running_loop()
    tracker = _by_loop.get(loop)
    if tracker is None:
        tracker = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else MemoryPresence()
        _by_loop[loop] = tracker
    return tracker
