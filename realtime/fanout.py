"""The fan-out: every event reaches each server process once, and each process writes it to its own sockets.

A room (a lot, a sale, a user's notifications, a user's sessions) has members:
the sockets of this process that watch it. With Redis, this process holds one
pub/sub connection and subscribes to a room's channel while it has a member
there, so an event costs one Redis message per process, whatever the room's
size; the process writes the frame, framed once (`Frame.prepared`), to each
local member. Without Redis there is one process, and `publish` hands the frame
to the rooms directly.

Watcher counts are kept per process (a Redis hash per room: process id to
count) and summed over live processes (`realtime.processes`). A process
publishes its count of a room at most once per `WS_COUNT_INTERVAL_SECONDS`,
and announces a room's total to its sockets at most that often, however many
join: no socket hears `USERS_COUNT` more than once an interval.

The pub/sub connection is watched by a ping: when it breaks or stops answering
(Redis away or frozen), every socket of the process is told (`lost`) and closes
with 1011; clients reconnect with `?since=` and are replayed what they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django.conf import settings

from ops.outages import redis_outage
from realtime.processes import PROCESS_ID, Heartbeat, live_ids, read_live

logger = logging.getLogger(__name__)

# The pub/sub connection is pinged this often; silent for PING_TIMEOUT_SECONDS, it is given up.
PING_INTERVAL_SECONDS = 5.0
PING_TIMEOUT_SECONDS = 12.0
# Seconds a synchronous publish (from a request's thread, after its commit) may wait on Redis.
PUBLISH_TIMEOUT_SECONDS = 2.0
# A room this process left stays subscribed this long: a socket that reconnects at once rejoins for free.
UNSUBSCRIBE_DELAY_SECONDS = 5.0

# The hub's command connections (counts, heartbeats, the address limit); a command past them waits this long.
POOL_SIZE = 100
POOL_WAIT_SECONDS = 10

EVENT, TEXT, CLOSE, COUNT = "e", "t", "c", "n"


class Frame:
    """One message of a room as this process received it: its kind, its text, and its WebSocket framing, made once."""

    __slots__ = ("_prepared", "kind", "lot_id", "seq", "text")

    def __init__(self, kind: str, text: str, lot_id: int = 0, seq: int = 0) -> None:
        self.kind, self.text, self.lot_id, self.seq = kind, text, lot_id, seq
        self._prepared: Any = None

    def prepared(self, factory) -> Any:
        """The frame as framed by a server's `factory` (autobahn's `prepareMessage`), built once for every socket."""
        prepared = self._prepared
        if prepared is None:
            prepared = self._prepared = factory.prepareMessage(self.text.encode())
        return prepared


def encode(kind: str, text: str, lot_id: int = 0, seq: int = 0) -> bytes:
    # A header line, then the frame's text as is: no second JSON encoding of the text.
    return f"{kind} {lot_id} {seq}\n".encode() + text.encode()


def decode(data: bytes) -> Frame:
    header, _, body = data.partition(b"\n")
    kind, lot_id, seq = header.decode().split(" ")
    return Frame(kind, body.decode(), int(lot_id), int(seq))


class Member(Protocol):
    """A socket in rooms (a consumer). Called on the event loop; none of these may block."""

    def receive_frame(self, room: str, frame: Frame) -> None: ...

    def receive_count(self, room: str, count: int) -> None: ...

    def lost(self) -> None: ...


class Room:
    __slots__ = (
        "announced",
        "counted",
        "last_seq",
        "members",
        "name",
        "newcomers",
        "remote",
        "snapshot",
        "subscribed",
        "unsubscribe_at",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[Member, bool] = {}  # member -> counted as a watcher
        self.counted = 0
        self.newcomers: list[Member] = []  # joined since the last announcement: owed the count
        self.remote: dict[str, int] = {}  # other processes' counts
        self.announced: int | None = None
        self.subscribed: asyncio.Future | None = None
        self.unsubscribe_at: float | None = None
        self.last_seq = 0  # the highest `seq` of the events that reached the room
        self.snapshot: tuple[float, int, Any] | None = None  # (valid until, seq, value): see Hub.snapshot

    def total(self) -> int:
        return self.counted + sum(self.remote.values())


def channel_prefix(redis_url: str) -> str:
    # Redis pub/sub ignores the database number: the channels carry it, so two sites on one server stay apart.
    db = (urlsplit(redis_url).path or "/0").lstrip("/") or "0"
    return f"rt:{db}:"


class Hub:
    """This process's rooms on one event loop."""

    def __init__(self, redis_url: str | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.rooms: dict[str, Room] = {}
        self.count_changed: set[str] = set()  # rooms whose local count this process has not published
        self.to_announce: set[str] = set()
        self.ticker: asyncio.Task | None = None
        self.redis_url = redis_url
        self.redis = self.subscriber = self.heartbeat = self.pubsub = None
        self.listener: asyncio.Task | None = None
        self.connecting: asyncio.Task | None = None
        self.unsubscribing: dict[str, asyncio.Task] = {}
        self.heard_at = 0.0
        self.heard_from: dict[str, float] = {}  # another process -> when its last count arrived (monotonic)
        if redis_url:
            import redis.asyncio as redis

            self.prefix = channel_prefix(redis_url)
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # A burst of joins past the pool's connections waits for one instead of failing.
            self.redis = redis.Redis(
                connection_pool=redis.BlockingConnectionPool.from_url(
                    redis_url,
                    max_connections=POOL_SIZE,
                    timeout=POOL_WAIT_SECONDS,
                    socket_connect_timeout=5,
                    socket_timeout=PING_TIMEOUT_SECONDS,
                    health_check_interval=5,
                )
            )
            # No retries on the subscription: redis-py would reconnect and re-subscribe
            # silently, and what was published meanwhile would be lost unnoticed.
            self.subscriber = redis.Redis.from_url(
                redis_url, socket_connect_timeout=5, socket_timeout=PING_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0)
            )
            self.heartbeat = Heartbeat(self.redis, ttl=settings.REALTIME_PROCESS_TTL_SECONDS)
            self.heartbeat.contributors.append(self._rewrite_counts)
            self.heartbeat.listeners.append(self._processes_seen)

    # --- Membership ------------------------------------------------------------

    async def join(self, name: str, member: Member, *, counted: bool = False) -> None:
        """Put `member` in room `name`; returns once the room's events reach this process.

        Raises a Redis error when the subscription fails (the member is then not in the room).
        """
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name)
        room.unsubscribe_at = None
        room.members[member] = counted
        if counted:
            self._count(room, +1)
            room.newcomers.append(member)
        if self.redis is None:
            return
        try:
            await self._subscribed(room)
        except BaseException:
            self.leave(name, member)
            raise

    def count_in(self, name: str, member: Member) -> None:
        """Count a member of room `name` as a watcher from now on (it has the room's state)."""
        room = self.rooms.get(name)
        if room is None or room.members.get(member, True):
            return
        room.members[member] = True
        self._count(room, +1)
        room.newcomers.append(member)

    def leave(self, name: str, member: Member) -> None:
        room = self.rooms.get(name)
        if room is None or member not in room.members:
            return
        if room.members.pop(member):
            self._count(room, -1)
            with contextlib.suppress(ValueError):
                room.newcomers.remove(member)
        if not room.members:
            if self.redis is None or room.subscribed is None:
                self._drop(room)
            else:
                room.unsubscribe_at = time.monotonic() + UNSUBSCRIBE_DELAY_SECONDS
                self._ensure_ticker()

    def _drop(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        self.to_announce.discard(room.name)

    # --- Publishing ------------------------------------------------------------

    async def publish(self, items: list[tuple[str, bytes]]) -> None:
        """Send (room, encoded) pairs through Redis to every process's members, in order."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, data in items:
                pipe.publish(self.prefix + name, data)
            await pipe.execute()

    def deliver(self, name: str, frame: Frame) -> None:
        """A room's message reached this process: to each local member (or, for a count, to the room's books)."""
        room = self.rooms.get(name)
        if room is None:
            return
        if frame.kind == COUNT:
            process_id, count = frame.text, frame.seq
            if process_id != PROCESS_ID:
                self.heard_from[process_id] = time.monotonic()
                if room.remote.get(process_id) != count:
                    room.remote[process_id] = count
                    self._announce_soon(room)
            return
        if frame.kind == EVENT and frame.seq > room.last_seq:
            room.last_seq = frame.seq
        for member in list(room.members):
            try:
                member.receive_frame(name, frame)
            except Exception:
                logger.exception("delivering to a socket of %s failed", name)

    def snapshot(self, name: str) -> Any:
        """The value `keep_snapshot` kept for room `name`, while valid: no later event reached the room, not expired."""
        room = self.rooms.get(name)
        if room is None or room.snapshot is None:
            return None
        until, seq, value = room.snapshot
        if until <= self.loop.time() or seq < room.last_seq:
            room.snapshot = None
            return None
        return value

    def keep_snapshot(self, name: str, seq: int, value: Any, *, seconds: float) -> None:
        """Keep `value`, a state of room `name` as of its event `seq`, for a joiner in the next `seconds` to reuse.

        A member that joined before it is read misses nothing with it: an event
        that reached the room before is in it (its seq is not later), and one
        that reaches the room after comes to the member too.
        """
        room = self.rooms.get(name)
        if room is not None and seq >= room.last_seq:
            room.snapshot = (self.loop.time() + seconds, seq, value)

    # --- Counts ----------------------------------------------------------------

    def _count(self, room: Room, delta: int) -> None:
        room.counted += delta
        self.count_changed.add(room.name)
        self._announce_soon(room)

    def _announce_soon(self, room: Room) -> None:
        self.to_announce.add(room.name)
        self._ensure_ticker()

    def _ensure_ticker(self) -> None:
        if self.ticker is None or self.ticker.done():
            self.ticker = self.loop.create_task(self._tick_forever(), context=contextvars.Context())

    async def _tick_forever(self) -> None:
        while self.to_announce or self.count_changed or any(r.unsubscribe_at for r in self.rooms.values()):
            try:
                await self._tick()
            except Exception as exc:  # Redis away: counts are published again at the next change or heartbeat.
                redis_outage.noticed(exc)
            await asyncio.sleep(settings.WS_COUNT_INTERVAL_SECONDS)

    async def _tick(self) -> None:
        changed, self.count_changed = self.count_changed, set()
        if self.redis is not None and changed:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for name in changed:
                        room = self.rooms.get(name)
                        self._write_count(pipe, name, room.counted if room else 0)
                        pipe.publish(self.prefix + name, encode(COUNT, PROCESS_ID, seq=room.counted if room else 0))
                    await pipe.execute()
            except Exception:
                self.count_changed |= changed  # Published at a later tick.
                raise
        announce, self.to_announce = self.to_announce, set()
        for name in announce:
            room = self.rooms.get(name)
            if room is None:
                continue
            total = room.total()
            owed = room.members if total != room.announced else room.newcomers
            room.announced = total
            for member in [m for m in owed if room.members.get(m)]:
                member.receive_count(name, total)
            room.newcomers = []
        now = time.monotonic()
        for room in [r for r in self.rooms.values() if r.unsubscribe_at is not None and r.unsubscribe_at <= now]:
            self._drop(room)
            if self.pubsub is not None and room.subscribed is not None:
                # A join of the same room from now on subscribes after this unsubscribe, never before it.
                self.unsubscribing[room.name] = self.loop.create_task(self._unsubscribe(self.pubsub, room.name))

    async def _unsubscribe(self, pubsub, name: str) -> None:
        try:
            # A broken connection took its subscriptions with it: nothing to undo.
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(self.prefix + name)
        finally:
            self.unsubscribing.pop(name, None)

    @staticmethod
    def counts_key(name: str) -> str:
        return f"rt:count:{name}"

    def _write_count(self, pipe, name: str, count: int) -> None:
        key = self.counts_key(name)
        if count:
            pipe.hset(key, PROCESS_ID, count)
            pipe.expire(key, int(settings.REALTIME_PROCESS_TTL_SECONDS * 2))
        else:
            pipe.hdel(key, PROCESS_ID)

    def _rewrite_counts(self, pipe) -> None:
        # Each heartbeat: this process's counts again, so they outlive a Redis restart and keep their key alive.
        for room in self.rooms.values():
            if room.counted:
                self._write_count(pipe, room.name, room.counted)

    def _processes_seen(self, live: set[str], read_at: float) -> None:
        # A process missing from a beat's read is gone, unless a count of it arrived since the read was sent.
        for room in self.rooms.values():
            gone = [p for p in room.remote if p not in live and self.heard_from.get(p, 0.0) < read_at]
            if gone:
                for process_id in gone:
                    del room.remote[process_id]
                self._announce_soon(room)

    # --- Redis subscriptions ---------------------------------------------------

    async def _subscribed(self, room: Room) -> None:
        if room.subscribed is None:
            room.subscribed = self.loop.create_future()
            try:
                await self._subscribe(room)
            except BaseException as exc:
                if not room.subscribed.done():
                    room.subscribed.set_exception(exc)
                    room.subscribed.exception()  # retrieved: a later joiner raises it again
                room.subscribed = None
                raise
        await asyncio.shield(room.subscribed)

    async def _subscribe(self, room: Room) -> None:
        if self.pubsub is None:
            self.pubsub = self.subscriber.pubsub()
            self.connecting = self.loop.create_task(self._connect(self.pubsub), context=contextvars.Context())
        pubsub, connecting = self.pubsub, self.connecting
        # Every join waits for the one connection: redis-py would open one per concurrent first subscribe.
        await asyncio.shield(connecting)
        if (unsubscribing := self.unsubscribing.get(room.name)) is not None:
            await asyncio.shield(unsubscribing)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.counts_key(room.name))
            read_live(pipe)
            counts_read = self.loop.create_task(pipe.execute())
            try:
                await pubsub.subscribe(self.prefix + room.name)
            finally:
                counts, live = await counts_read
        live = live_ids(live)
        for process_id, count in counts.items():
            process_id = process_id.decode()
            if process_id != PROCESS_ID and process_id in live and process_id not in room.remote:
                room.remote[process_id] = int(count)  # (A count that arrived meanwhile is newer.)
                self._announce_soon(room)
        # The subscription is live once Redis confirms it: the listener resolves `room.subscribed`.
        await asyncio.wait_for(asyncio.shield(room.subscribed), PING_TIMEOUT_SECONDS)

    async def _connect(self, pubsub) -> None:
        """Open the subscription's connection, renew this process's heartbeat once, and start listening."""
        try:
            await pubsub.connect()
            await self.heartbeat.beat()
        except BaseException:
            if self.pubsub is pubsub:
                self.pubsub = None
            await _close_quietly(pubsub)
            raise
        self.heard_at = time.monotonic()
        self.listener = self.loop.create_task(self._listen(pubsub), context=contextvars.Context())
        self.heartbeat.start()

    async def _listen(self, pubsub) -> None:
        pinger = self.loop.create_task(self._ping(pubsub))
        try:
            while True:
                message = await pubsub.get_message(timeout=PING_INTERVAL_SECONDS)
                if message is None:
                    continue
                self.heard_at = time.monotonic()
                kind = message["type"]
                if kind == "message":
                    self.deliver(message["channel"].decode()[len(self.prefix) :], decode(message["data"]))
                elif kind == "subscribe":
                    room = self.rooms.get(message["channel"].decode()[len(self.prefix) :])
                    if room is not None and room.subscribed is not None and not room.subscribed.done():
                        room.subscribed.set_result(None)
                        redis_outage.answered()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lose(pubsub, exc)
        finally:
            pinger.cancel()

    async def _ping(self, pubsub) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_SECONDS)
            if time.monotonic() - self.heard_at > PING_TIMEOUT_SECONDS:
                self._lose(pubsub, TimeoutError("no answer from Redis"))
                return
            with contextlib.suppress(Exception):
                await pubsub.ping()

    def _lose(self, pubsub, exc: BaseException) -> None:
        """The subscription broke: every member is told, the rooms are dropped, the next join subscribes afresh."""
        if self.pubsub is not pubsub:
            return
        redis_outage.noticed(exc)
        self.pubsub = None
        if self.listener is not None and self.listener is not asyncio.current_task():
            self.listener.cancel()
        self.listener = None
        self.loop.create_task(_close_quietly(pubsub))
        rooms, self.rooms = self.rooms, {}
        self.count_changed.clear()
        self.to_announce.clear()
        for room in rooms.values():
            if room.subscribed is not None and not room.subscribed.done():
                room.subscribed.set_exception(ConnectionError("Redis subscription lost"))
                room.subscribed.exception()
            for member in list(room.members):
                with contextlib.suppress(Exception):
                    member.lost()


async def _close_quietly(pubsub) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pubsub.aclose(), 2)


# --- One hub per event loop ----------------------------------------------------

_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def get_hub() -> Hub:
    """The running loop's hub (a Redis client belongs to its loop)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        with _hubs_lock:
            hub = _hubs.get(loop) or Hub(settings.REDIS_URL or None)
            _hubs[loop] = hub
    return hub


async def close_hub() -> None:
    """Stop the running loop's hub and close its connections (a test's loop, or a server that stops)."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is None:
        return
    for task in (hub.ticker, hub.listener):
        if task is not None:
            task.cancel()
    if hub.heartbeat is not None:
        hub.heartbeat.stop()
        await hub.heartbeat.forget()
    if hub.pubsub is not None:
        await _close_quietly(hub.pubsub)
    for client in (hub.redis, hub.subscriber):
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


# --- Publishing from the domain ------------------------------------------------

_sync_redis = None
_sync_redis_lock = threading.Lock()


def _redis_for_threads():
    global _sync_redis
    with _sync_redis_lock:
        if _sync_redis is None:
            import redis

            _sync_redis = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_timeout=PUBLISH_TIMEOUT_SECONDS,
                socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS,
                health_check_interval=5,
            )
        return _sync_redis


def check_reachable() -> None:
    """Raises unless Redis answers a PING on the connection broadcasts take (nothing to reach without Redis)."""
    if settings.REDIS_URL:
        _redis_for_threads().ping()


def encode_items(items: Iterable[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """The domain's messages ({"room", "kind": "event"|"text"|"close", "text", "lot_id", "seq"}) as sent."""
    kinds = {"event": EVENT, "text": TEXT, "close": CLOSE}
    return [
        (item["room"], encode(kinds[item["kind"]], item.get("text", ""), item.get("lot_id", 0), item.get("seq", 0)))
        for item in items
    ]


def publish(items: list[dict[str, Any]]) -> None:
    """Send committed messages to every process's sockets, in order; from a thread that is not an event loop's.

    With Redis, one pipelined round trip from this thread; a failure is
    raised (the caller logs it: lot events are stored, and watchers fill the gap).
    """
    encoded = encode_items(items)
    if not settings.REDIS_URL:
        async_to_sync(_publish_encoded)(encoded)
        return
    with _redis_for_threads().pipeline(transaction=False) as pipe:
        for name, data in encoded:
            pipe.publish(channel_prefix(settings.REDIS_URL) + name, data)
        pipe.execute()


async def publish_async(items: list[dict[str, Any]]) -> None:
    """`publish` on an event loop (the clock's broadcasts go out this way)."""
    await _publish_encoded(encode_items(items))


async def _publish_encoded(encoded: list[tuple[str, bytes]]) -> None:
    if settings.REDIS_URL:
        await get_hub().publish(encoded)
        return
    # One process: every loop's hub is this process's (tests run one loop each). Delivered
    # in a context of their own, as from Redis: not in the publisher's (an `async_to_sync`
    # call's, whose executor is gone once it returns).
    for loop, hub in list(_hubs.items()):
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_deliver_all, hub, encoded, context=contextvars.Context())


def _deliver_all(hub: Hub, encoded: list[tuple[str, bytes]]) -> None:
    for name, data in encoded:
        hub.deliver(name, decode(data))
