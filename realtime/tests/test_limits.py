"""realtime.limits.AddressLimiter: open sockets per address, counted per process, summed over live processes.

Two limiters with process ids of their own stand for two server processes on
one real Redis (the db of REDIS_URL); each has its own heartbeat. A process
whose heartbeat stopped and lapsed stops counting, its field left in place.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from django.conf import settings

from ops.outages import REDIS_AWAY
from realtime.fanout import POOL_SIZE
from realtime.limits import AddressLimiter, get_limiter, sockets_key
from realtime.processes import PROCESSES_KEY, Heartbeat
from testsupport.ports import free_ports

TTL = 30.0


async def test_without_redis_the_process_counts_in_memory():
    limiter = AddressLimiter(None)

    opened = [await limiter.open("192.0.2.1") for _ in range(3)]
    other = await limiter.open("192.0.2.2")
    await limiter.close("192.0.2.1")
    after_close = await limiter.open("192.0.2.1")
    for _ in range(3):
        await limiter.close("192.0.2.1")
    await limiter.close("192.0.2.2")

    assert (opened, other, after_close) == ([1, 2, 3], 1, 3)
    assert limiter.local == {}  # Nothing kept for an address with nothing open.


@pytest.fixture
async def redis_client():
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def processes(redis_client):
    """Two "processes": (limiter, heartbeat) pairs with their own ids, both alive; an address of their own."""
    address = f"test-{uuid.uuid4().hex[:8]}"
    made = []
    for name in ("a", "b"):
        process_id = f"test-{name}-{uuid.uuid4().hex[:8]}"
        heartbeat = Heartbeat(redis_client, process_id=process_id, ttl=TTL)
        heartbeat.start = lambda: None  # Beaten by hand here: `beat()` is one beat of the running loop.
        made.append((AddressLimiter(redis_client, heartbeat, process_id=process_id, ttl=TTL), heartbeat))
    for _, heartbeat in made:
        await heartbeat.beat()
    yield address, made
    for _, heartbeat in made:
        await heartbeat.forget()
    await redis_client.delete(sockets_key(address))


async def fields(client, address: str) -> dict[str, int]:
    return {p.decode(): int(n) for p, n in (await client.hgetall(sockets_key(address))).items()}


@pytest.mark.services
async def test_two_processes_share_the_count_and_a_dead_one_stops_counting(redis_client, processes):
    address, [(a, _), (b, b_heart)] = processes

    counts = [await a.open(address), await a.open(address), await b.open(address), await a.open(address)]
    ttl = await redis_client.ttl(sockets_key(address))
    in_redis = await fields(redis_client, address)

    # B is killed with -9: no more beats, and its entry lapses (here: made to have lapsed).
    await redis_client.zadd(PROCESSES_KEY, {b.process_id: time.time() - 1})
    with_b_dead = await a.open(address)
    b_field_left = (await fields(redis_client, address)).get(b.process_id)

    assert counts == [1, 2, 3, 4]
    assert in_redis == {a.process_id: 3, b.process_id: 1}
    assert 0 < ttl <= 2 * TTL
    assert with_b_dead == 4  # A's four; B's field is still there, and not counted.
    assert b_field_left == 1
    # B beats again (it was frozen, not killed): counted again.
    await b_heart.beat()
    assert await a.open(address) == 5 + 1


@pytest.mark.services
async def test_closing_counts_out_and_removes_the_field_at_zero(redis_client, processes):
    address, [(a, _), (b, _)] = processes
    for _ in range(2):
        await a.open(address)
    await b.open(address)

    await a.close(address)
    after_one = await fields(redis_client, address)
    await a.close(address)
    after_both = await fields(redis_client, address)

    assert after_one == {a.process_id: 1, b.process_id: 1}
    assert after_both == {b.process_id: 1}
    assert await b.open(address) == 2
    assert a.local == {}


@pytest.mark.services
async def test_the_heartbeat_writes_the_counts_back_after_redis_lost_them(redis_client, processes):
    address, [(a, a_heart), (b, b_heart)] = processes
    for _ in range(3):
        await a.open(address)

    await redis_client.delete(sockets_key(address), PROCESSES_KEY)  # A Redis restart: nothing kept.
    before_beat = await b.open(address)  # Nobody's heartbeat is back yet: every field counts.
    await a_heart.beat()
    await b_heart.beat()
    after_beat = await b.open(address)

    assert before_beat == 1  # A's sockets were lost with Redis...
    assert after_beat == 3 + 2  # ...and are counted again after A's next beat.
    assert 0 < await redis_client.ttl(sockets_key(address)) <= 2 * TTL


@pytest.mark.services
async def test_a_handshake_that_failed_counts_nothing_and_its_field_is_set_right_by_the_beats(redis_client, processes):
    address, [(_, heartbeat), (b, _)] = processes
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_ports(1)}/0", socket_connect_timeout=2)
    # A process whose handshake failed on Redis (its heartbeat's connection still works).
    a = AddressLimiter(dead, heartbeat, process_id=heartbeat.process_id, ttl=TTL)
    try:
        with pytest.raises(REDIS_AWAY):
            await a.open(address)
        # What a handshake stuck in a frozen Redis leaves: its increment lands after it gave up.
        await redis_client.hincrby(sockets_key(address), a.process_id, 1)
        counted_while_stale = await b.open(address)
        await heartbeat.beat()
        after_beat = await fields(redis_client, address)
        unsure_after_one_beat = dict(a.unsure)
        await heartbeat.beat()
    finally:
        await dead.aclose()

    assert a.local == {}
    assert counted_while_stale == 2
    assert after_beat == {b.process_id: 1}
    assert address in unsure_after_one_beat  # Fixed again at the next beat: a late increment lands before it.
    assert a.unsure == {}
    assert await b.open(address) == 2


@pytest.mark.services
async def test_a_burst_of_handshakes_past_the_pool_size_counts_every_socket(redis_client):
    limiter = get_limiter()
    address = f"test-burst-{uuid.uuid4().hex[:8]}"
    burst = 3 * POOL_SIZE
    try:
        counts = await asyncio.gather(*(limiter.open(address) for _ in range(burst)), return_exceptions=True)
        failed = [c for c in counts if isinstance(c, BaseException)]
        assert not failed, f"{len(failed)} handshakes failed: {failed[0]!r}"
        assert sorted(counts) == list(range(1, burst + 1))
    finally:
        limiter.local.pop(address, None)
        limiter.heartbeat.stop()
        await limiter.heartbeat.forget()
        await redis_client.delete(sockets_key(address))
