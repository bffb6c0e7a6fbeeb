"""Open WebSockets per client address (`WS_CONNECTIONS_PER_IP`), counted per process, not per socket.

With Redis, an address has one hash, `rt:sockets:<address>`: a field per server
process (`realtime.processes.PROCESS_ID`) holding that process's open sockets
from the address. A handshake is one round trip: add one to this process's
field, keep the key alive, read the fields and the live processes; the
address's count is this process's own (kept in memory) plus the fields of the
processes whose heartbeat is alive. Nothing runs per socket: each heartbeat of
the process rewrites its non-zero counts, so they come back after a Redis
restart, and the fields of a process killed with -9 stop counting once its
heartbeat lapses (`REALTIME_PROCESS_TTL_SECONDS`). Without Redis there is one
process, and its counts in memory are the truth.

While Redis is away a handshake is let through uncounted, as every limit here:
the site keeps working through an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

from channels.middleware import BaseMiddleware
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.middleware import accept_and_close
from ops.outages import REDIS_AWAY, redis_outage
from realtime.fanout import get_hub
from realtime.processes import PROCESS_ID, live_ids, read_live

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY_CONNECTIONS = 4429

# A field whose write may have failed is set to the process's own count (or
# removed) by this many successful heartbeats: a command stuck in a frozen
# Redis's buffer lands when Redis resumes, before the second.
UNSURE_BEATS = 2
CONNECT_ATTEMPTS = 3

# One atomic step: this process's field minus one, removed when it reaches zero (or less, after a restart).
_DECREMENT = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""


def sockets_key(address: str) -> str:
    return f"rt:sockets:{address}"


class AddressLimiter:
    """One process's open sockets per client address, and the total across live processes.

    `redis` is an asyncio Redis client or None; `heartbeat` the process's
    `Heartbeat` on that client (this limiter adds its writes to every beat).
    """

    def __init__(self, redis=None, heartbeat=None, *, process_id: str = PROCESS_ID, ttl: float = 45.0) -> None:
        self.redis, self.heartbeat, self.process_id = redis, heartbeat, process_id
        self.key_ttl = max(1, int(ttl * 2))
        self.local: dict[str, int] = {}  # address -> this process's open sockets from it (none at zero)
        # Addresses whose field in Redis may be wrong (a write failed or was cancelled): beats left to fix it.
        self.unsure: dict[str, int] = {}
        self._fixing: list[str] = []
        self._decrement = None
        if redis is not None:
            self._decrement = redis.register_script(_DECREMENT)
            if heartbeat is not None:
                heartbeat.contributors.append(self.rewrite)
                heartbeat.listeners.append(self.beat_succeeded)

    async def open(self, address: str) -> int:
        """Count one socket from `address` in; returns the address's open sockets, this one included.

        Raises the Redis error when Redis fails (the socket is then not counted).
        """
        own = self.local[address] = self.local.get(address, 0) + 1
        if self.redis is None:
            return own
        if self.heartbeat is not None:
            self.heartbeat.start()  # This process's counts are live while its heartbeat is.
        try:
            fields, live = await self._count_in(sockets_key(address))
        except BaseException:
            # Not counted here; whatever reached Redis is set right by the next heartbeats.
            self._forget(address)
            self.unsure[address] = UNSURE_BEATS
            raise
        return own + self._others(fields, live)

    async def _count_in(self, key: str) -> tuple[dict, set[str]]:
        """Tried again on a broken connection, at most `CONNECT_ATTEMPTS` times (pooled connections that a
        Redis restart closed fail once each: redis-py drops them and connects afresh), not on a timeout."""
        for _ in range(CONNECT_ATTEMPTS - 1):
            with contextlib.suppress(RedisConnectionError):
                return await self._count_once(key)
        return await self._count_once(key)

    async def _count_once(self, key: str) -> tuple[dict, set[str]]:
        """One round trip: this process's field plus one, the key kept alive, then every field and the live processes.

        A transaction, so racing handshakes in any process never pass the limit together.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, self.process_id, 1)
            pipe.expire(key, self.key_ttl)
            pipe.hgetall(key)
            read_live(pipe)
            _, _, fields, live = await pipe.execute()
        return fields, live_ids(live)

    def _others(self, fields: dict, live: set[str]) -> int:
        # Until this process's own heartbeat is read back (it just started, or Redis restarted),
        # who is alive is not known: every process in the hash counts.
        everyone = self.process_id not in live
        total = 0
        for process_id, count in fields.items():
            process_id = process_id.decode() if isinstance(process_id, bytes) else process_id
            if process_id != self.process_id and (everyone or process_id in live):
                total += int(count)
        return total

    async def close(self, address: str) -> None:
        """Count one socket from `address` out: at once in this process, in Redis now or at the next heartbeats."""
        self._forget(address)
        if self.redis is None:
            return
        try:
            await self._decrement(keys=[sockets_key(address)], args=[self.process_id])
        except BaseException as exc:
            self.unsure[address] = UNSURE_BEATS
            if not isinstance(exc, Exception):
                raise

    def _forget(self, address: str) -> None:
        count = self.local.get(address, 0) - 1
        if count > 0:
            self.local[address] = count
        else:
            self.local.pop(address, None)

    # --- Each heartbeat --------------------------------------------------------

    def rewrite(self, pipe) -> None:
        """This process's counts again, in the beat's pipeline: they outlive a Redis restart and keep their keys alive.

        A field written by a handshake or a close in flight meanwhile is off by that one until the next beat.
        """
        for address, count in self.local.items():
            pipe.hset(sockets_key(address), self.process_id, count)
            pipe.expire(sockets_key(address), self.key_ttl)
        self._fixing = list(self.unsure)
        for address in self._fixing:
            if address not in self.local:
                pipe.hdel(sockets_key(address), self.process_id)

    def beat_succeeded(self, live: set[str], sent_at: float) -> None:
        for address in self._fixing:
            left = self.unsure.get(address, 0) - 1
            if left > 0:
                self.unsure[address] = left
            else:
                self.unsure.pop(address, None)
        self._fixing = []


# --- One limiter per event loop, beside its hub ---------------------------------

_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AddressLimiter] = weakref.WeakKeyDictionary()


def get_limiter() -> AddressLimiter:
    """The running loop's limiter, on its hub's Redis client and heartbeat."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        hub = get_hub()
        limiter = _limiters[loop] = AddressLimiter(hub.redis, hub.heartbeat, ttl=settings.REALTIME_PROCESS_TTL_SECONDS)
    return limiter


class ConnectionLimitMiddleware(BaseMiddleware):
    """At most `WS_CONNECTIONS_PER_IP` open WebSockets per client address; more close at once with 4429.

    The address is `scope["client"]`: the peer's, or X-Forwarded-For's when
    daphne runs with `--proxy-headers` (behind nginx).
    """

    async def __call__(self, scope, receive, send):
        limit = settings.WS_CONNECTIONS_PER_IP
        client = scope.get("client")
        if limit <= 0 or not client:
            return await super().__call__(scope, receive, send)
        limiter, address = get_limiter(), client[0]
        try:
            count = await limiter.open(address)
        except REDIS_AWAY as exc:
            # Not counted, so not to be taken back either; told once per outage, not per socket.
            redis_outage.noticed(exc)
            return await super().__call__(scope, receive, send)
        if count > limit:
            # Uncounted before the refusal's own I/O: a refused handshake never holds a place.
            await limiter.close(address)
            logger.info("refused a websocket: %s open from one address", count - 1)
            return await accept_and_close(receive, send, CLOSE_TOO_MANY_CONNECTIONS)
        try:
            return await super().__call__(scope, receive, send)
        finally:
            await limiter.close(address)
