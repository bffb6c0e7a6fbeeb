"""Abuse limits (issue #8, item 10): bids per user, WebSocket connections per client address.

`BIDS_PER_MINUTE` counts bids and buy-nows of one user, over REST and
WebSocket, in every process (Redis); a bid over it gets 429 `rate_limited`
with `Retry-After`, or `BID_REJECTED rate_limited` on a socket, and never
touches the lot. `WS_CONNECTIONS_PER_IP` counts the open sockets of one client
address across processes; one over it is closed with 4429, and the sockets of
a process killed with -9 stop counting once its heartbeat lapses.

The root conftest turns both limits off for every other test; these turn them on.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from websockets.exceptions import ConnectionClosed

from auction_site.asgi import application
from bids.exceptions import BidsRateLimited
from bids.models import Bid
from bids.services import buy_now, place_bid
from conftest import access_token_for
from ops.ratelimit import take_allowance
from realtime.limits import CLOSE_TOO_MANY_CONNECTIONS, sockets_key
from realtime.processes import PROCESSES_KEY
from testsupport.bidding import run_threads
from testsupport.live_servers import database_url_for_tests, live_server_processes
from testsupport.reliability import size
from testsupport.servers import (
    BASE_DIR,
    ServeProcess,
    clear_of_window_end,
    free_ports,
    http,
    production_env,
    ws_connect,
)
from testsupport.ws import ORIGIN, TIMEOUT, Socket, Sockets

pytestmark = pytest.mark.reliability

# An answer or a frame that must come; generous for a loaded machine.
ANSWER_SECONDS = 30


@pytest.fixture
async def ws():
    async with Sockets() as sockets:
        yield sockets


# --- take_allowance: the fixed window both chat and bids use ------------------------------------


@pytest.mark.django_db
def test_concurrent_callers_pass_exactly_the_limit():
    callers, limit = size(50, 400), 10
    waits = run_threads(lambda: take_allowance("test:burst", limit=limit, window=60), [()] * callers)

    assert waits.count(0) == limit
    assert all(1 <= wait <= 60 for wait in waits if wait)


def test_the_wait_runs_to_the_end_of_the_window(rate_window):
    assert take_allowance("test:wait", limit=1, window=60) == 0
    wait = take_allowance("test:wait", limit=1, window=60)

    assert wait == math.ceil(60 - rate_window % 60)  # Whole seconds, rounded up: 23.5 s left is 24.
    assert take_allowance("test:other-key", limit=1, window=60) == 0


def test_a_limit_of_zero_counts_nothing():
    assert [take_allowance("test:off", limit=0, window=60) for _ in range(100)] == [0] * 100


def test_with_redis_away_every_action_passes_uncounted():
    dead_redis = f"redis://127.0.0.1:{free_ports(1)}/0"
    with override_settings(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead_redis}}
    ):
        waits = [take_allowance("test:away", limit=1, window=60) for _ in range(3)]

    assert waits == [0, 0, 0]


# --- BIDS_PER_MINUTE in process: REST, buy-now, WebSocket share one count ---------------------


@pytest.mark.django_db
def test_rest_bids_over_the_limit_get_429_with_retry_after(settings, make_lot, bidder, other_bidder, client_for):
    settings.BIDS_PER_MINUTE = 3
    lot = make_lot(starting_price="10.00", buy_now_price="500.00")
    client = client_for(bidder)
    url = f"/api/lots/{lot.pk}/bids/"

    first = [client.post(url, {"amount": str(10 + n)}, format="json").status_code for n in range(3)]
    lot.refresh_from_db()
    before = (lot.bid_count, lot.current_price, lot.high_max_amount, lot.status)
    over = client.post(url, {"amount": "50.00"}, format="json")
    buy = client.post(f"/api/lots/{lot.pk}/buy-now/")
    lot.refresh_from_db()
    after = (lot.bid_count, lot.current_price, lot.high_max_amount, lot.status)
    someone_else = client_for(other_bidder).post(url, {"amount": "60.00"}, format="json")

    assert first == [201, 201, 201]
    for refused in (over, buy):
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused["Retry-After"]) <= 60
        assert refused.json()["retry_after"] == int(refused["Retry-After"])
    assert after == before
    assert someone_else.status_code == 201  # Each user has an allowance of their own.


@pytest.mark.django_db
def test_a_throttled_bid_reads_and_locks_nothing(settings, make_lot, bidder):
    settings.BIDS_PER_MINUTE = 1
    lot = make_lot()
    place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    with CaptureQueriesContext(connection) as queries, pytest.raises(BidsRateLimited) as refused:
        place_bid(lot_id=lot.pk + 1000, bidder=bidder, amount="20.00")  # No such lot: not even looked up.

    assert refused.value.code == "rate_limited"
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert set(statements) <= {"SAVEPOINT", "RELEASE", "ROLLBACK"}, queries.captured_queries


@pytest.mark.django_db
def test_replays_of_an_idempotency_key_count(settings, make_lot, bidder):
    settings.BIDS_PER_MINUTE = 2
    lot = make_lot()

    first = place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00", idempotency_key="k1")
    replay = place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00", idempotency_key="k1")
    with pytest.raises(BidsRateLimited) as refused:
        place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00", idempotency_key="k1")

    assert (first.replayed, replay.replayed, replay.bid.pk) == (False, True, first.bid.pk)
    assert refused.value.code == "rate_limited"
    assert Bid.objects.filter(lot=lot).count() == 1


@pytest.mark.django_db(transaction=True)
async def test_socket_bids_over_the_limit_get_bid_rejected_and_rest_shares_the_count(
    settings, ws, make_lot, bidder, client_for
):
    settings.BIDS_PER_MINUTE = 3
    lot = await database_sync_to_async(make_lot)(starting_price="10.00", buy_now_price="500.00")
    socket, _ = await ws.watch(lot, bidder)

    async def send(frame: dict) -> dict:
        await socket.send(frame)
        while (reply := await socket.next()).get("request_id") != frame["request_id"]:
            pass  # The room's own NEW_BID events.
        return reply

    first = await send({"type": "NEW_BID", "amount": "10.00", "request_id": "a"})
    client = await database_sync_to_async(client_for)(bidder)
    rest = await database_sync_to_async(client.post)(f"/api/lots/{lot.pk}/bids/", {"amount": "20.00"}, format="json")
    third = await send({"type": "NEW_BID", "amount": "30.00", "request_id": "b"})
    over = await send({"type": "NEW_BID", "amount": "50.00", "request_id": "c"})
    buy = await send({"type": "BUY_NOW", "request_id": "d"})

    assert (first["type"], rest.status_code, third["type"]) == ("BID_ACCEPTED", 201, "BID_ACCEPTED")
    for reply, request_id in ((over, "c"), (buy, "d")):
        assert (reply["type"], reply["code"], reply["request_id"]) == ("BID_REJECTED", "rate_limited", request_id)
        assert 1 <= reply["retry_after"] <= 60
    assert await socket.is_open()


@pytest.mark.django_db
def test_chat_over_its_limit_gets_retry_after_too(settings, make_lot, bidder, client_for):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    lot = make_lot()
    client = client_for(bidder)

    statuses = [client.post(f"/api/lots/{lot.pk}/chat/", {"text": "hello"}, format="json") for _ in range(2)]

    assert [r.status_code for r in statuses] == [201, 429]
    assert statuses[1].json()["code"] == "rate_limited" and 1 <= int(statuses[1]["Retry-After"]) <= 60


@pytest.mark.django_db
def test_buy_now_is_refused_after_the_limit_without_closing_the_lot(settings, make_lot, bidder):
    settings.BIDS_PER_MINUTE = 1
    lot = make_lot(buy_now_price="100.00")
    place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    with pytest.raises(BidsRateLimited):
        buy_now(lot_id=lot.pk, buyer=bidder)

    lot.refresh_from_db()
    assert (lot.status, lot.bid_count) == ("open", 1)


# --- WS_CONNECTIONS_PER_IP in process ------------------------------------------------------------


async def open_from(ws, path: str, address: str) -> Socket:
    """Open `path` as if from `address` (what daphne puts in scope["client"])."""
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
    communicator.scope["client"] = [address, 40000]
    ws.opened.append(communicator)
    accepted, _ = await communicator.connect(timeout=TIMEOUT)
    assert accepted, f"{path} was refused before accept"
    return Socket(communicator)


@pytest.mark.django_db(transaction=True)
async def test_sockets_over_the_limit_per_address_close_with_4429(settings, ws, make_lot, make_user):
    settings.WS_CONNECTIONS_PER_IP = 2
    lot = await database_sync_to_async(make_lot)()
    user = await database_sync_to_async(make_user)("noti")
    token = await database_sync_to_async(access_token_for)(user)
    here, elsewhere = "203.0.113.7", "198.51.100.9"

    # Every consumer counts against the same limit: a lot room and the notifications socket.
    room = await open_from(ws, f"/ws/lots/{lot.pk}/", here)
    notifications = await open_from(ws, f"/ws/notifications/?token={token}", here)
    refused = await open_from(ws, f"/ws/lots/{lot.pk}/", here)
    other_address = await open_from(ws, f"/ws/lots/{lot.pk}/", elsewhere)

    assert (await room.receive())["type"] == "LOT_STATUS"
    assert await refused.close_code() == CLOSE_TOO_MANY_CONNECTIONS
    assert (await other_address.receive())["type"] == "LOT_STATUS"
    assert await room.is_open() and await notifications.is_open()

    # A closed socket frees its place at once.
    await room.communicator.disconnect()
    after_close = await open_from(ws, f"/ws/lots/{lot.pk}/", here)
    assert (await after_close.receive())["type"] == "LOT_STATUS"


@pytest.mark.django_db
def test_rest_is_not_limited_by_open_sockets(settings, client):
    settings.WS_CONNECTIONS_PER_IP = 1
    assert [client.get("/api/lots/").status_code for _ in range(5)] == [200] * 5


# --- Across real processes (PostgreSQL + Redis) ------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_one_users_bids_to_two_processes_are_limited_once(make_lot, bidder):
    limit, attempts = 10, size(50, 200)
    lot = make_lot(starting_price="10.00")
    token = access_token_for(bidder)
    env = {"DATABASE_URL": database_url_for_tests(), "REDIS_URL": settings.REDIS_URL, "BIDS_PER_MINUTE": str(limit)}
    with live_server_processes(2, env=env) as servers:
        clear_of_window_end()
        first_window = int(time.time() // 60)
        start = threading.Barrier(attempts)

        def post(n: int):
            start.wait()
            return http(
                "POST",
                f"{servers[n % 2].url}/api/lots/{lot.pk}/bids/",
                json_body={"amount": f"{10 + n}.00"},
                headers={"Authorization": f"Bearer {token}"},
            )

        started = time.monotonic()
        with ThreadPoolExecutor(attempts) as pool:
            replies = list(pool.map(post, range(attempts)))
        elapsed = time.monotonic() - started
        on_socket = _socket_bid(servers[1].url, lot.pk, token)
        last_window = int(time.time() // 60)
        # What the servers counted, per window: every attempt and the socket bid, each once.
        counted = [cache.get(f"allowance:bids:{bidder.pk}:{index}") or 0 for index in (first_window, last_window)]

    throttled = [r for r in replies if r.status == 429]
    passed = [r for r in replies if r.status != 429]
    print(
        f"{attempts} concurrent bids over 2 processes in {elapsed:.2f} s: {len(passed)} passed the throttle; "
        f"counted {counted} in windows {first_window}..{last_window}"
    )
    assert {r.status for r in passed} <= {201, 409}
    assert {r.json()["code"] for r in throttled} == {"rate_limited"}
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in throttled)
    assert Bid.objects.filter(lot=lot, bidder=bidder).count() == sum(r.status == 201 for r in passed)
    if last_window == first_window:
        assert counted[0] == attempts + 1
        assert len(passed) == limit, [(r.status, r.body[:80]) for r in replies]
        assert (on_socket["type"], on_socket["code"]) == ("BID_REJECTED", "rate_limited")
    else:
        # A machine slow enough to run the burst across a window boundary (the servers count on
        # the real clock): every request counted once, and each window passed its own allowance.
        assert last_window == first_window + 1, "the burst took over a minute"
        assert sum(counted) == attempts + 1, counted
        socket_passed = on_socket.get("code") != "rate_limited"
        assert len(passed) + socket_passed == sum(min(count, limit) for count in counted), counted


def _socket_bid(base_url: str, lot_id: int, token: str) -> dict:
    url = base_url.replace("http", "ws", 1) + f"/ws/lots/{lot_id}/?token={token}"
    with ws_connect(url, origin="http://localhost") as socket:
        socket.send(json.dumps({"type": "NEW_BID", "amount": "999.00", "request_id": "over"}))
        while True:
            frame = json.loads(socket.recv(timeout=ANSWER_SECONDS))
            if frame.get("request_id") == "over":
                return frame


def _close_code(url: str, origin: str, **headers: str) -> int | None:
    """Open a socket; the close code if the server closes it at once, None if it stays open."""
    with ws_connect(url, origin=origin, additional_headers=headers) as socket:
        try:
            socket.recv(timeout=ANSWER_SECONDS)  # A lot room sends LOT_STATUS at once.
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_sockets_per_address_are_counted_across_processes_and_lapse_after_kill_9(make_lot):
    """Counted once over two processes; the sockets of a process killed with -9 count until its heartbeat lapses.

    The servers run with a heartbeat that lapses after `ttl` seconds (45 by
    default), so the place comes back within seconds: the test waits for it.
    """
    limit, ttl = 3, 9
    lot = make_lot()
    env = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "WS_CONNECTIONS_PER_IP": str(limit),
        "REALTIME_PROCESS_TTL_SECONDS": str(ttl),
    }
    origin = "http://localhost"
    key = sockets_key("127.0.0.1")
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(key)  # Left by an earlier, interrupted run.

    def fields() -> dict[str, int]:
        return {p.decode(): int(n) for p, n in client.hgetall(key).items()}

    with live_server_processes(2, env=env) as (doomed, survivor), contextlib.ExitStack() as held:
        doomed_room, survivor_room = (
            s.url.replace("http", "ws", 1) + f"/ws/lots/{lot.pk}/" for s in (doomed, survivor)
        )
        for url in (doomed_room, doomed_room, survivor_room):
            socket = held.enter_context(ws_connect(url, origin=origin))
            assert json.loads(socket.recv(timeout=ANSWER_SECONDS))["type"] == "LOT_STATUS"
        counted = fields()
        over_on_survivor = _close_code(survivor_room, origin)

        doomed.process.kill()  # SIGKILL: no disconnect handler runs, nothing is removed.
        doomed.process.wait(30)
        killed_at, killed_at_epoch = time.monotonic(), time.time()
        doomed_id = next(p for p in counted if p.startswith(f"{doomed.process.pid}-"))
        lapses_at = client.zscore(PROCESSES_KEY, doomed_id)
        right_after_kill = _close_code(survivor_room, origin)
        probed_by = time.time()
        while (code := _close_code(survivor_room, origin)) is not None:
            assert time.monotonic() - killed_at < ttl + 90, f"still refused ({code})"
            time.sleep(1)
        lapsed_after = time.monotonic() - killed_at
        left = fields()
    client.delete(key)
    client.close()

    print(f"the killed process's sockets stopped counting {lapsed_after:.1f} s after the kill (heartbeat ttl {ttl} s)")
    assert over_on_survivor == CLOSE_TOO_MANY_CONNECTIONS
    assert sorted(counted.values()) == [1, 2] and counted[doomed_id] == 2  # One field per process.
    assert lapses_at is not None and lapses_at <= killed_at_epoch + ttl  # Its last beat was before the kill.
    if probed_by < lapses_at:
        assert right_after_kill == CLOSE_TOO_MANY_CONNECTIONS  # The dead process's sockets still count...
    assert left.get(doomed_id) == 2  # ...and then stop counting by the lapse alone: nothing removed them.


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_behind_the_proxy_the_forwarded_address_is_counted(tmp_path, make_lot):
    """`manage.py serve --proxy-headers` (as docker-compose.yml runs it behind nginx) counts X-Forwarded-For."""
    lot = make_lot()
    port = free_ports(1)
    env = production_env(
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        STATIC_ROOT=str(tmp_path / "static"),
        WS_CONNECTIONS_PER_IP="1",
    )
    log = tmp_path / "serve.log"
    server = ServeProcess(port, env, log, "--no-clock", "--proxy-headers")
    try:
        server.wait_listening()
        url, origin = f"ws://127.0.0.1:{port}/ws/lots/{lot.pk}/", f"http://127.0.0.1:{port}"
        with ws_connect(url, origin=origin, additional_headers={"X-Forwarded-For": "192.0.2.1"}) as first:
            assert json.loads(first.recv(timeout=ANSWER_SECONDS))["type"] == "LOT_STATUS"
            same_client = _close_code(url, origin, **{"X-Forwarded-For": "192.0.2.1"})
            other_client = _close_code(url, origin, **{"X-Forwarded-For": "192.0.2.2"})
    finally:
        server.stop()

    assert same_client == CLOSE_TOO_MANY_CONNECTIONS
    assert other_client is None  # Same peer (127.0.0.1, the proxy), another client: open.


def test_nginx_overwrites_x_forwarded_for_and_compose_trusts_it():
    """Clients cannot pick their address: nginx sets X-Forwarded-For to the peer it saw, never appends."""
    nginx = (BASE_DIR / "deploy" / "nginx.conf").read_text()
    compose = (BASE_DIR / "docker-compose.yml").read_text()

    assert nginx.count("proxy_set_header X-Forwarded-For $remote_addr;") == 2
    assert "$proxy_add_x_forwarded_for" not in nginx
    assert '"--proxy-headers"' in compose
