"""Which server processes are alive: one heartbeat per process, not one per socket.

Every process that holds sockets has an id and keeps one entry in the Redis
sorted set `rt:processes`, scored by the Unix time at which it lapses. Its
`Heartbeat` renews the entry every `REALTIME_PROCESS_TTL_SECONDS / 3`, and in
the same round trip rewrites what the process counts (watchers per room,
sockets per address), so counts come back by themselves after Redis restarts.
A process killed with -9 stops renewing, and whatever it counted stops
counting once its entry lapses: within a minute by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
import uuid
from collections.abc import Callable

logger = logging.getLogger(__name__)

PROCESSES_KEY = "rt:processes"

# This process's id: the pid plus a random part, since pids are reused across restarts.
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def read_live(pipe) -> None:
    """Queue on `pipe` the read of the live processes' ids; `live_ids` decodes its result."""
    pipe.zrangebyscore(PROCESSES_KEY, time.time(), "+inf")


def live_ids(result) -> set[str]:
    return {member.decode() if isinstance(member, bytes) else member for member in result}


class Heartbeat:
    """One process's heartbeat on one event loop: renews its entry and lets each contributor add its writes.

    `contributors` are called with the pipeline of each beat; `listeners` get
    the live process ids the beat read, and when (monotonic) it was sent.
    """

    def __init__(self, redis, *, process_id: str = PROCESS_ID, ttl: float) -> None:
        self.redis, self.process_id, self.ttl = redis, process_id, ttl
        self.contributors: list[Callable[[object], None]] = []
        self.listeners: list[Callable[[set[str], float], None]] = []
        self.task: asyncio.Task | None = None
        self.live: set[str] = {process_id}

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def beat(self) -> set[str]:
        """Renew now; returns the live processes' ids."""
        now, sent_at = time.time(), time.monotonic()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(PROCESSES_KEY, {self.process_id: now + self.ttl})
            pipe.zremrangebyscore(PROCESSES_KEY, "-inf", now)
            read_live(pipe)
            for contribute in self.contributors:
                contribute(pipe)
            results = await pipe.execute()
        self.live = live_ids(results[2]) | {self.process_id}
        for listener in self.listeners:
            listener(self.live, sent_at)
        return self.live

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.beat()
                if failing:
                    logger.info("heartbeat renewed again")
                failing = False
            except Exception as exc:  # Redis away: what this process counts lapses; rewritten on return.
                if not failing:
                    logger.warning("heartbeat failed (%r); retrying", exc)
                failing = True
            await asyncio.sleep(self.ttl / 3)

    async def forget(self) -> None:
        """A clean stop: this process stops counting at once."""
        with contextlib.suppress(Exception):
            await self.redis.zrem(PROCESSES_KEY, self.process_id)
