"""The fan-out's promises through two real `manage.py serve` processes on PostgreSQL and a redis-server of the test's own.

- an event costs one Redis PUBLISH per room, whatever the number of watchers;
- a socket hears USERS_COUNT at most once per WS_COUNT_INTERVAL_SECONDS, however many join,
  and the count it ends on is the true total over both processes;
- the watchers of a process killed with -9 leave the count within REALTIME_PROCESS_TTL_SECONDS,
  and the others keep receiving every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextlib import AsyncExitStack

import pytest
import redis
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conftest import access_token_for
from lots.events import lot_group
from testsupport.live_servers import ServeProcess, database_url_for_tests, live_server_processes, request

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# A frame that must come; generous for a loaded machine.
RECEIVE_TIMEOUT = 30
GENEROUS = 60
UNTHROTTLED = {"BIDS_PER_MINUTE": "0", "WS_CONNECTIONS_PER_IP": "0"}


def server_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url_for_tests(), "REDIS_URL": redis_url, **UNTHROTTLED, **extra}


def ws_url(server: ServeProcess, lot_id: int) -> str:
    return server.url.replace("http", "ws", 1) + f"/ws/lots/{lot_id}/"


async def next_frame(socket: ClientConnection, timeout: float = RECEIVE_TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def watch(stack: AsyncExitStack, server: ServeProcess, lot_id: int) -> ClientConnection:
    socket = await stack.enter_async_context(connect(ws_url(server, lot_id), origin="http://localhost", proxy=None))
    status = await next_frame(socket)
    assert status["type"] == "LOT_STATUS", status
    return socket


async def events_until(socket: ClientConnection, seq: int) -> list[dict]:
    """Every room event (frames with a `seq`) up to and including `seq`."""
    events: list[dict] = []
    while not events or events[-1]["seq"] < seq:
        try:
            frame = await next_frame(socket)
        except TimeoutError:
            raise AssertionError(
                f"no event {seq} within {RECEIVE_TIMEOUT} s; got {[e['seq'] for e in events]}"
            ) from None
        if "seq" in frame and frame["type"] != "LOT_STATUS":
            events.append(frame)
    return events


class CountReader:
    """Reads a socket in the background, keeping its USERS_COUNT frames with their arrival times, and its events."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.counts: list[tuple[float, int]] = []
        self.events: list[dict] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._read_all()

    async def _read_all(self) -> None:
        async for text in self.socket:
            frame = json.loads(text)
            if frame["type"] == "USERS_COUNT":
                self.counts.append((time.monotonic(), frame["count"]))
            elif "seq" in frame:
                self.events.append(frame)

    def last_count(self) -> int | None:
        return self.counts[-1][1] if self.counts else None

    async def wait_for(self, check, what: str, timeout: float = GENEROUS) -> float:
        deadline = time.monotonic() + timeout
        while not check():
            assert not self.task.done(), f"the socket ended while waiting for {what}"
            assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s; counts {self.counts}"
            await asyncio.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        self.task.cancel()


class Bids:
    """REST bids alternating between two bidders, each at the lot's next minimum."""

    def __init__(self, tokens: list[str], lot_id: int) -> None:
        self.tokens, self.lot_id, self.amount, self.placed = tokens, lot_id, "10.00", 0

    async def place(self, server: ServeProcess) -> int:
        token = self.tokens[self.placed % len(self.tokens)]
        status, body = await asyncio.to_thread(
            request, "POST", f"{server.url}/api/lots/{self.lot_id}/bids/", token=token, data={"amount": self.amount}
        )
        assert status == 201, body
        self.placed += 1
        self.amount = body["lot"]["min_next_bid"]
        return body["lot"]["seq"]


def publish_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))


@pytest.fixture
def tokens(bidder, other_bidder) -> list[str]:
    return [access_token_for(bidder), access_token_for(other_bidder)]


async def test_an_event_costs_one_publish_per_room_whatever_the_number_of_watchers(
    make_lot, tokens, private_redis, settings
):
    bids_per_round = 8
    client = redis.Redis.from_url(private_redis.url)
    interval = settings.WS_COUNT_INTERVAL_SECONDS
    with live_server_processes(2, env=server_env(private_redis.url)) as servers:
        publishes: dict[int, int] = {}
        for watchers in (4, 40):
            lot = await database_sync_to_async(make_lot)(starting_price="10.00")
            async with AsyncExitStack() as stack:
                sockets = await asyncio.gather(*(watch(stack, servers[n % 2], lot.pk) for n in range(watchers)))
                # One subscription per process for the room, not one per socket.
                channel = f"rt:0:{lot_group(lot.pk)}"
                assert client.pubsub_numsub(channel) == [(channel.encode(), 2)]
                # Joins are over: the counts they published settle within a couple of intervals.
                await asyncio.sleep(3 * interval)
                before = publish_calls(client)
                bids = Bids(tokens, lot.pk)
                last_seq = 0
                for n in range(bids_per_round):
                    last_seq = await bids.place(servers[n % 2])
                received = await asyncio.gather(*(events_until(socket, last_seq) for socket in sockets))
                publishes[watchers] = publish_calls(client) - before
            for events in received:
                assert [e["seq"] for e in events] == list(range(1, last_seq + 1))
                assert events == received[0]

    print(f"PUBLISH calls for {bids_per_round} bids: {publishes} (by watchers)")
    # A bid's event goes to the lot's room, and an outbid notice to the user's room: a few rooms, not a socket each.
    assert publishes[40] <= bids_per_round * 3 + 2
    assert publishes[40] <= publishes[4] + 2, publishes


async def test_a_storm_of_joins_is_announced_at_most_once_an_interval_and_ends_on_the_true_total(
    make_lot, private_redis, settings
):
    """Fails while a process ignores the count of a process that started after its last heartbeat.

    The early watcher's process beat (and read the live processes) before the
    other process had any socket, hence any heartbeat; `Room.total` leaves out
    counts of processes not in that live set, and nothing announces the room
    again when the next beat finds the newcomer: the count stays short.
    """
    storm = 60
    interval = 1.0
    lot = await database_sync_to_async(make_lot)(starting_price="10.00")
    env = server_env(private_redis.url, WS_COUNT_INTERVAL_SECONDS=str(interval))
    with live_server_processes(2, env=env) as servers:
        async with AsyncExitStack() as stack:
            early = CountReader(await watch(stack, servers[0], lot.pk))
            await early.wait_for(lambda: early.last_count() == 1, "the early watcher counted")
            started = time.monotonic()

            for wave in range(storm // 10):  # Ten at a time, over both processes.
                await asyncio.gather(*(watch(stack, servers[(wave + n) % 2], lot.pk) for n in range(10)))
            await early.wait_for(lambda: early.last_count() == storm + 1, "the true total")
            await asyncio.sleep(3 * interval)
            elapsed = time.monotonic() - started
            heard = [count for at, count in early.counts if at > started]
            early.stop()

    print(f"{len(heard)} USERS_COUNT frames in {elapsed:.1f} s for {storm} joins: {heard}")
    assert len(heard) <= elapsed / interval + 2
    assert heard[-1] == storm + 1


async def test_the_watchers_of_a_killed_process_leave_the_count_and_the_others_miss_nothing(
    make_lot, tokens, private_redis
):
    ttl = 6
    lot = await database_sync_to_async(make_lot)(starting_price="10.00")
    env = server_env(private_redis.url, REALTIME_PROCESS_TTL_SECONDS=str(ttl))
    with live_server_processes(2, env=env) as (doomed, survivor):
        async with AsyncExitStack() as stack:
            for _ in range(3):
                await watch(stack, doomed, lot.pk)
            readers = [CountReader(await watch(stack, survivor, lot.pk)) for _ in range(3)]
            await readers[0].wait_for(lambda: readers[0].last_count() == 6, "a count of six over both processes")

            doomed.process.kill()  # SIGKILL: no goodbye, no count taken back.
            doomed.process.wait(10)
            killed_at = time.monotonic()
            left_at = await readers[0].wait_for(
                lambda: readers[0].last_count() == 3, "the dead process's watchers gone"
            )

            bids = Bids(tokens, lot.pk)
            last_seq = 0
            for _ in range(4):
                last_seq = await bids.place(survivor)
            for reader in readers:
                await reader.wait_for(lambda r=reader: r.events and r.events[-1]["seq"] >= last_seq, "every event")
                reader.stop()

    print(f"the killed process's watchers left the count {left_at - killed_at:.1f} s after the kill (TTL {ttl} s)")
    for reader in readers:
        assert [e["seq"] for e in reader.events] == list(range(1, last_seq + 1))
        # Never counted back in once gone.
        assert all(count == 3 for at, count in reader.counts if at > left_at), reader.counts
