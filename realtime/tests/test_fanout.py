"""realtime.fanout's Hub, driven directly with fake members: counts, order, a lost subscription, unsubscribing.

On Redis (settings.REDIS_URL, the second leg) or in memory (the first); the
tests of a lost subscription run a private redis-server of their own on both.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
import uuid

import pytest
import redis.asyncio
from django.conf import settings

from realtime import fanout
from realtime.processes import PROCESS_ID, PROCESSES_KEY, Heartbeat

INTERVAL = 0.2
# What must happen does, within this, on a machine at load 12.
GENEROUS = 30
with_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL (the second leg)")


class FakeMember:
    """A socket as the hub sees it: records what it is handed."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.frames: list[tuple[str, str, int, str]] = []  # (room, kind, seq, text)
        self.counts: list[int] = []
        self.count_times: list[float] = []
        self.lost_calls = 0

    def receive_frame(self, room: str, frame: fanout.Frame) -> None:
        self.frames.append((room, frame.kind, frame.seq, frame.text))

    def receive_count(self, room: str, count: int) -> None:
        self.counts.append(count)
        self.count_times.append(time.monotonic())

    def lost(self) -> None:
        self.lost_calls += 1

    def __repr__(self) -> str:
        return f"FakeMember({self.name!r})"


async def eventually(check, *, what: str, timeout: float = GENEROUS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.02)


def new_room() -> str:
    return f"lot.test-{uuid.uuid4().hex[:12]}"


def event(room: str, seq: int) -> dict:
    return {"room": room, "kind": "event", "lot_id": 1, "seq": seq, "text": f'{{"seq": {seq}}}'}


@pytest.fixture(autouse=True)
def _short_intervals(settings):
    settings.WS_COUNT_INTERVAL_SECONDS = INTERVAL


@pytest.fixture
async def hub():
    """This test loop's hub (on Redis when REDIS_URL is set); closed at the end."""
    try:
        yield fanout.get_hub()
    finally:
        await fanout.close_hub()


@pytest.fixture
async def raw_redis():
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


# --- Order ------------------------------------------------------------------------------------


async def test_a_rooms_members_get_its_frames_in_publish_order_and_no_other_rooms(hub):
    room, other = new_room(), new_room()
    members = [FakeMember(str(n)) for n in range(3)]
    outsider = FakeMember("outsider")
    for member in members:
        await hub.join(room, member)
    await hub.join(other, outsider)

    for seq in range(1, 31):
        # Separate publishes, some carrying two items: order holds across and within them.
        items = [event(room, seq)] if seq % 3 else [event(room, seq), {"room": other, "kind": "text", "text": "x"}]
        await fanout.publish_async(items)
    await fanout.publish_async([{"room": room, "kind": "text", "text": "end"}])

    await eventually(lambda: all(m.frames and m.frames[-1][3] == "end" for m in members), what="every frame")
    for member in members:
        assert [seq for _, kind, seq, _ in member.frames if kind == fanout.EVENT] == list(range(1, 31)), member
        assert {r for r, *_ in member.frames} == {room}
    await eventually(lambda: len(outsider.frames) == 10, what="the other room's frames")
    assert {r for r, *_ in outsider.frames} == {other}


async def test_a_burst_of_concurrent_joins_over_many_rooms_all_succeed_and_hear_their_room(hub):
    """What a server's start, or the reconnections after Redis returned, bring: hundreds of joins at once.

    One subscription per room, not per socket. On Redis this fails while the
    hub's first subscriptions race to open the pub/sub connection (redis-py's
    `PubSub.connect` awaits a pool connection, so each concurrent first
    subscribe takes one of its own): all but one room time out after
    `PING_TIMEOUT_SECONDS`.
    """
    rooms = [new_room() for _ in range(20)]
    members = {room: [FakeMember(f"{room}-{n}") for n in range(15)] for room in rooms}
    await asyncio.gather(*(hub.join(room, m, counted=True) for room in rooms for m in members[room]))

    assert {room: hub.rooms[room].counted for room in rooms} == dict.fromkeys(rooms, 15)
    await fanout.publish_async([event(room, 1) for room in rooms])
    everyone = [m for room in rooms for m in members[room]]
    await eventually(lambda: all(m.frames for m in everyone), what="the event in every room")
    assert all(m.frames == [(room, fanout.EVENT, 1, '{"seq": 1}')] for room in rooms for m in members[room])
    await eventually(lambda: all(m.counts and m.counts[-1] == 15 for m in everyone), what="the counts")


# --- Counts -----------------------------------------------------------------------------------


async def test_a_storm_of_joins_is_announced_at_most_once_an_interval_and_ends_on_the_true_count(hub):
    room = new_room()
    early = FakeMember("early")
    await hub.join(room, early, counted=True)
    await eventually(lambda: early.counts == [1], what="the first count")
    started = time.monotonic()

    late = [FakeMember(str(n)) for n in range(60)]
    for n, member in enumerate(late):
        await hub.join(room, member, counted=True)
        if n % 10 == 9:
            await asyncio.sleep(INTERVAL / 4)  # Spread over several intervals.
    await eventually(lambda: early.counts[-1] == 61, what="the count of 61")
    await asyncio.sleep(3 * INTERVAL)  # Nothing more to announce: nothing more comes.
    elapsed = time.monotonic() - started

    during = early.count_times[1:]
    assert len(during) <= elapsed / INTERVAL + 2, (len(during), elapsed)
    assert early.counts[-1] == 61
    # Every newcomer hears the count once it is counted, never more often than the early one.
    assert all(m.counts and m.counts[-1] == 61 for m in late)


async def test_a_leave_is_announced_and_an_uncounted_member_is_told_no_count(hub):
    room = new_room()
    watcher, leaver, listener = FakeMember("watcher"), FakeMember("leaver"), FakeMember("listener")
    await hub.join(room, watcher, counted=True)
    await hub.join(room, leaver, counted=True)
    await hub.join(room, listener)  # e.g. a socket that has not had the lot's state yet
    await eventually(lambda: watcher.counts[-1:] == [2], what="a count of 2")

    hub.leave(room, leaver)
    await eventually(lambda: watcher.counts[-1] == 1, what="a count of 1")
    assert listener.counts == []
    hub.count_in(room, listener)
    await eventually(lambda: watcher.counts[-1] == 2 and listener.counts[-1:] == [2], what="the listener counted")


async def test_counts_of_other_processes_are_summed_and_a_process_that_is_gone_is_not_counted(settings):
    """The hub's books, fed as Redis feeds them (a COUNT message per process, the live set at each beat)."""
    settings.REDIS_URL = ""  # No heartbeat of its own to overrule the live set below.
    hub = fanout.get_hub()
    try:
        room = new_room()
        member = FakeMember()
        await hub.join(room, member, counted=True)
        hub.deliver(room, fanout.Frame(fanout.COUNT, "other-a", seq=3))
        hub.deliver(room, fanout.Frame(fanout.COUNT, "other-b", seq=4))
        hub.deliver(room, fanout.Frame(fanout.COUNT, PROCESS_ID, seq=99))  # Its own, heard back: already counted.
        await eventually(lambda: member.counts[-1:] == [8], what="1 + 3 + 4")

        hub._processes_seen({PROCESS_ID, "other-a"}, time.monotonic())  # other-b's heartbeat lapsed.
        await eventually(lambda: member.counts[-1] == 4, what="1 + 3")
    finally:
        await fanout.close_hub()


@with_redis
async def test_with_redis_counts_are_summed_over_live_processes_only(hub, raw_redis):
    """Other processes simulated as they write: a heartbeat, a count in `rt:count:<room>`, a COUNT message."""
    room = new_room()
    key = fanout.Hub.counts_key(room)
    alive, dead = f"alive-{uuid.uuid4().hex[:8]}", f"dead-{uuid.uuid4().hex[:8]}"
    other = Heartbeat(raw_redis, process_id=alive, ttl=60)
    await other.beat()
    await raw_redis.zadd(PROCESSES_KEY, {dead: time.time() - 1})  # Lapsed: killed with -9 a while ago.
    await raw_redis.hset(key, mapping={alive: 3, dead: 5})
    try:
        member = FakeMember()
        await hub.join(room, member, counted=True)
        await eventually(lambda: member.counts[-1:] == [4], what="1 + 3 (the dead process's 5 left out)")
        # This process's own count is written for the others.
        await eventually_async(lambda: raw_redis.hget(key, PROCESS_ID), b"1", what="its count in the hash")

        # The other process counts 7 now: it publishes its count.
        await raw_redis.publish(hub.prefix + room, fanout.encode(fanout.COUNT, alive, seq=7))
        await eventually(lambda: member.counts[-1] == 8, what="1 + 7")

        # Its heartbeat lapses: at this process's next beat, it is no longer counted.
        await raw_redis.zadd(PROCESSES_KEY, {alive: time.time() - 1})
        await hub.heartbeat.beat()
        await eventually(lambda: member.counts[-1] == 1, what="the lapsed process left out")
        assert 5 not in [c - 1 for c in member.counts[1:]]  # The dead process's 5 never came back.

        hub.leave(room, member)
        await eventually_async(lambda: raw_redis.hget(key, PROCESS_ID), None, what="its count removed")
    finally:
        await raw_redis.delete(key)
        await raw_redis.zrem(PROCESSES_KEY, alive, dead)


async def eventually_async(read, expected, *, what: str, timeout: float = GENEROUS) -> None:
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s (last {value!r})"
        await asyncio.sleep(0.05)


# --- Unsubscribing ----------------------------------------------------------------------------


async def numsub(client, channel: str) -> int:
    return dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0)


@with_redis
async def test_the_last_leave_unsubscribes_after_the_delay_and_a_rejoin_meanwhile_keeps_the_room(
    hub, raw_redis, monkeypatch
):
    monkeypatch.setattr(fanout, "UNSUBSCRIBE_DELAY_SECONDS", 0.5)
    room, kept = new_room(), new_room()
    first, second = FakeMember("first"), FakeMember("second")
    await hub.join(room, first)
    await hub.join(room, second)
    await hub.join(kept, first)
    assert await numsub(raw_redis, hub.prefix + room) == 1  # One subscription for the room, not one per member.

    hub.leave(room, first)
    hub.leave(room, second)
    assert hub.rooms[room].unsubscribe_at is not None  # Not at once: a reconnecting socket rejoins for free.
    hub.leave(kept, first)
    await hub.join(kept, first)  # Rejoined within the delay.

    await eventually_async(lambda: numsub(raw_redis, hub.prefix + room), 0, what="the room unsubscribed")
    assert room not in hub.rooms
    await asyncio.sleep(0.5 + 3 * INTERVAL)
    assert await numsub(raw_redis, hub.prefix + kept) == 1
    await fanout.publish_async([event(kept, 1), event(room, 1)])
    await eventually(lambda: first.frames, what="the kept room's event")
    assert first.frames == [(kept, fanout.EVENT, 1, '{"seq": 1}')]
    assert second.frames == []


@with_redis
async def test_a_join_while_the_room_is_being_unsubscribed_ends_subscribed(hub, raw_redis, monkeypatch):
    """The unsubscribe goes out first, then the join's subscribe: never the other way round."""
    monkeypatch.setattr(fanout, "UNSUBSCRIBE_DELAY_SECONDS", 0)
    room, leaver, joiner = new_room(), FakeMember("leaver"), FakeMember("joiner")
    await hub.join(room, leaver)
    unsubscribe = hub.pubsub.unsubscribe
    started = asyncio.Event()

    async def slow_unsubscribe(*channels):
        started.set()
        await asyncio.sleep(0.3)  # Long enough for the join below to be sent first, were it not held back.
        return await unsubscribe(*channels)

    monkeypatch.setattr(hub.pubsub, "unsubscribe", slow_unsubscribe)
    hub.leave(room, leaver)
    await asyncio.wait_for(started.wait(), GENEROUS)
    await hub.join(room, joiner)
    await asyncio.sleep(
        0.6
    )  # Past the slow unsubscribe (a loaded machine can only make this pass wrongly, never fail).

    assert await numsub(raw_redis, hub.prefix + room) == 1
    await fanout.publish_async([event(room, 1)])
    await eventually(lambda: joiner.frames, what="the event after the rejoin")


async def test_in_memory_the_last_leave_drops_the_room(settings):
    settings.REDIS_URL = ""
    hub = fanout.get_hub()
    try:
        room, member = new_room(), FakeMember()
        await hub.join(room, member, counted=True)
        hub.leave(room, member)
        assert room not in hub.rooms
    finally:
        await fanout.close_hub()


def test_a_new_event_loop_never_inherits_a_closed_loops_hub(settings):
    """Loops die with every test or thread; a new one often gets a dead one's id()."""
    settings.REDIS_URL = ""
    hubs: dict[int, object] = {}
    reused = False

    async def join_one(name: str) -> tuple[fanout.Hub, int]:
        hub = fanout.get_hub()
        await hub.join("lot.1", FakeMember(name), counted=True)
        return hub, hub.rooms["lot.1"].counted

    for attempt in range(10):
        loop = asyncio.new_event_loop()
        try:
            hub, counted = loop.run_until_complete(join_one(f"member-{attempt}"))
            loop.run_until_complete(fanout.close_hub())
        finally:
            loop.close()
        # A fresh loop has a fresh room: the member that never left died with its loop.
        assert counted == 1
        reused = reused or id(loop) in hubs
        assert hubs.get(id(loop)) is not hub
        hubs[id(loop)] = hub
        del loop
        gc.collect()
    if not reused:
        pytest.skip("the interpreter never reused a loop's id(); nothing to check")


# --- A lost subscription (a private redis-server, on both legs) -------------------------------


@pytest.fixture
def private_redis(private_redis, settings, monkeypatch):
    """The test's own redis-server (killed at the end, frozen or not) as the fan-out's Redis, with a quick ping."""
    settings.REDIS_URL = private_redis.url
    monkeypatch.setattr(fanout, "PING_INTERVAL_SECONDS", 0.5)
    monkeypatch.setattr(fanout, "PING_TIMEOUT_SECONDS", 3.0)
    return private_redis


async def _rooms_with_members(hub) -> tuple[list[FakeMember], str]:
    room, other = new_room(), new_room()
    members = [FakeMember("a"), FakeMember("b"), FakeMember("c")]
    await hub.join(room, members[0], counted=True)
    await hub.join(room, members[1])
    await hub.join(other, members[2], counted=True)
    await hub.join(other, members[0])
    await fanout.publish_async([event(room, 1), event(other, 1)])
    await eventually(lambda: all(m.frames for m in members), what="the first events")
    return members, room


@pytest.mark.parametrize("fault", ["killed", "frozen"])
async def test_a_lost_subscription_tells_every_member_and_a_later_join_subscribes_afresh(private_redis, fault):
    hub = fanout.get_hub()
    try:
        members, room = await _rooms_with_members(hub)
        if fault == "killed":
            private_redis.kill()
        else:
            private_redis.process.send_signal(signal.SIGSTOP)  # Answers nothing, closes nothing: only the ping tells.

        await eventually(lambda: all(m.lost_calls for m in members), what="every member told")
        assert hub.rooms == {} and hub.pubsub is None

        if fault == "killed":
            private_redis.start()  # Same port.
        else:
            private_redis.process.send_signal(signal.SIGCONT)
        newcomer = FakeMember("newcomer")
        deadline = time.monotonic() + GENEROUS
        while True:
            try:
                await hub.join(room, newcomer)
                break
            except Exception:
                assert time.monotonic() < deadline, "no join succeeded after Redis returned"
                await asyncio.sleep(0.2)
        await fanout.publish_async([event(room, 2)])
        await eventually(lambda: newcomer.frames, what="an event after the loss")
        assert newcomer.frames == [(room, fanout.EVENT, 2, '{"seq": 2}')]
        # The members that were told are out of the rooms: nothing more reaches them.
        assert all(all(seq == 1 for _, _, seq, _ in m.frames) for m in members)
    finally:
        await fanout.close_hub()
