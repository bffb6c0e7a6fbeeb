"""Storms across two real daphne processes on PostgreSQL + Redis, then invariants on what the database holds.

- A bid storm: many bidders over REST and WebSocket on one lot, watchers on both processes.
- A close under load: bidders keep bidding past a soft-closing lot's end while two clock processes race to close it.
- Idempotency: one key sent many times at once and in a row, over both transports and both processes.

Sizes come from `testsupport.reliability.size`: small in the everyday suite,
full under `make reliability` (RELIABILITY_FULL=1). Each test prints its figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from urllib.error import URLError

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import ClientConnection, connect

from bids.models import Bid
from conftest import access_token_for
from lots.models import Lot, LotAlias, LotStatus, Notification
from lots.pricing import increment_for
from testsupport.bidding import lot_events, replay_leaders
from testsupport.clocks import clock_processes
from testsupport.live_servers import ServeProcess, database_url_for_tests, live_server_processes
from testsupport.reliability import size
from testsupport.servers import http

pytestmark = [pytest.mark.services, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

BIDDERS = size(40, 500)
BIDS_EACH = size(5, 20)
WATCHERS = size(10, 100)
LATE_BIDDERS = size(10, 50)
LATE_WATCHERS = size(4, 20)
SAME_KEY_TIMES = 50
# Generous: an answer slower than this counts as a hung request.
ANSWER_TIMEOUT = 60
# Sockets opened at once while the room fills up.
CONNECTING_AT_ONCE = 20
BID_CODES = {"accepted", "bid_too_low", "already_leading"}


def server_env() -> dict[str, str]:
    """The test database and Redis; every per-client limit off (all clients share 127.0.0.1)."""
    return {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "BIDS_PER_MINUTE": "0",
        "WS_CONNECTIONS_PER_IP": "0",
        "WS_MESSAGES_PER_SECOND": "1000",
        "WS_MESSAGE_BURST": "1000",
        "LOG_LEVEL": "INFO",
        # Each process runs its ORM work on one thread: a small pool is plenty.
        "DATABASE_POOL_MIN": "1",
    }


def ws_url(server: ServeProcess, lot_id: int, token: str | None) -> str:
    return server.url.replace("http", "ws", 1) + f"/ws/lots/{lot_id}/" + (f"?token={token}" if token else "")


def stored(query):
    """Run an ORM `query` from a worker thread, and give its connection back (the database is dropped at the end)."""
    try:
        return query()
    finally:
        connection.close()


# --- Clients -------------------------------------------------------------------------------------


@dataclass
class Answer:
    """One bid request and what came back."""

    transport: str
    bidder: str
    key: str | None
    amount: Decimal
    max_amount: Decimal | None
    sent_at: datetime
    code: str  # "accepted", a rejection code, "http_<status>" or "no_answer"
    bid_id: int | None = None
    replayed: bool = False
    min_next_bid: str | None = None


def rest_bid(server: ServeProcess, lot_id: int, token: str, body: dict, key: str | None) -> tuple[int, dict]:
    """POST a bid with `Authorization: Bearer`; (status, body); (0, {}) when no answer came."""
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    try:
        reply = http(
            "POST", f"{server.url}/api/lots/{lot_id}/bids/", json_body=body, headers=headers, timeout=ANSWER_TIMEOUT
        )
    except (URLError, OSError):
        return 0, {}
    try:
        return reply.status, reply.json()
    except ValueError:
        return reply.status, {"raw": reply.body[:200].decode(errors="replace")}


def rest_answer(status: int, body: dict, **request) -> Answer:
    if status == 201:
        return Answer(
            **request,
            code="accepted",
            bid_id=body["bid"]["id"],
            replayed=body["replayed"],
            min_next_bid=body["lot"]["min_next_bid"],
        )
    if status == 0:
        return Answer(**request, code="no_answer")
    if 400 <= status < 500 and "code" in body:
        return Answer(**request, code=body["code"], min_next_bid=body.get("min_next_bid"))
    return Answer(**request, code=f"http_{status}")


class Socket:
    """A WebSocket client that reads every frame as it comes; bids wait for their answer by `request_id`."""

    def __init__(self, socket: ClientConnection, name: str) -> None:
        self.socket, self.name = socket, name
        self.frames: list[dict] = []
        self.waiting: dict[str, list[asyncio.Future]] = defaultdict(list)
        self.last_seq = -1
        self.seq_seen = asyncio.Condition()
        self.min_next_bid: str | None = None
        self.late_answers: list[float] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, name: str) -> Socket:
        socket = await connect(
            url, origin="http://localhost", proxy=None, open_timeout=ANSWER_TIMEOUT, ping_interval=None
        )
        client = cls(socket, name)
        await client.wait_for_seq(0)
        return client

    async def _read(self) -> None:
        async for text in self.socket:
            frame = json.loads(text)
            self.frames.append(frame)
            if frame["type"] in ("LOT_STATUS", "NEW_BID"):
                self.min_next_bid = frame["lot"]["min_next_bid"]
            # A socket answers its frames in the order they came: the oldest waiting request gets it.
            waiting = self.waiting.get(frame.get("request_id") or frame["type"])
            if waiting:
                future = waiting.pop(0)
                if future.done():  # It timed out: note how late the answer came, for the failure message.
                    self.late_answers.append(round(asyncio.get_running_loop().time() - future.sent_at, 1))
                else:
                    future.set_result(frame)
            if "seq" in frame:
                async with self.seq_seen:
                    self.last_seq = frame["seq"]
                    self.seq_seen.notify_all()

    async def ask(self, frame: dict) -> dict | None:
        """Send a bid frame (with its `request_id`) or a PING; the answer, or None if none came in time."""
        future = asyncio.get_running_loop().create_future()
        future.sent_at = asyncio.get_running_loop().time()
        self.waiting[frame["request_id"] if frame["type"] != "PING" else "PONG"].append(future)
        await self.socket.send(json.dumps(frame))
        try:
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            return None

    async def wait_for_seq(self, seq: int, timeout: float = ANSWER_TIMEOUT) -> None:
        async with self.seq_seen:
            try:
                await asyncio.wait_for(self.seq_seen.wait_for(lambda: self.last_seq >= seq), timeout)
            except TimeoutError:
                raise AssertionError(f"{self.name} saw seq {self.last_seq}, not {seq}, within {timeout} s") from None

    def room_events(self) -> list[dict]:
        return [f for f in self.frames if "seq" in f and f["type"] != "LOT_STATUS"]

    async def close(self) -> None:
        await self.socket.close()
        # A socket the server dropped shows in the checks (a missing answer or event), not here.
        await asyncio.gather(self.reader, return_exceptions=True)


def ws_answer(frame: dict | None, **request) -> Answer:
    if frame is None:
        return Answer(**request, code="no_answer")
    if frame["type"] == "BID_ACCEPTED":
        return Answer(
            **request,
            code="accepted",
            bid_id=frame["bid"]["id"],
            replayed=frame["replayed"],
            min_next_bid=frame["min_next_bid"],
        )
    return Answer(**request, code=frame["code"], min_next_bid=frame.get("min_next_bid"))


@dataclass
class Bidder:
    """One simulated bidder: its transport, server and token, and what it knows of the price."""

    name: str
    token: str
    transport: str
    server: ServeProcess
    min_next_bid: Decimal
    rng: random.Random
    socket: Socket | None = None
    answers: list[Answer] = field(default_factory=list)

    def next_request(self) -> tuple[Decimal, Decimal | None]:
        """The minimum next bid, or a few increments above; now and then with a hidden maximum (a proxy bid)."""
        if self.socket is not None and self.socket.min_next_bid:
            # A socket also hears the room's prices.
            self.min_next_bid = max(self.min_next_bid, Decimal(self.socket.min_next_bid))
        step = increment_for(self.min_next_bid)
        amount = self.min_next_bid + step * self.rng.choice([0, 0, 0, 1, 2, 3, 5, 8])
        max_amount = amount + step * self.rng.choice([1, 3, 10]) if self.rng.random() < 0.25 else None
        return amount, max_amount

    async def bid(self, lot_id: int, pool: ThreadPoolExecutor) -> Answer:
        amount, max_amount = self.next_request()
        body = {"amount": str(amount)} | ({"max_amount": str(max_amount)} if max_amount is not None else {})
        # Every WebSocket bid carries a request_id; half the REST ones an Idempotency-Key.
        key = uuid.uuid4().hex if self.transport == "ws" or self.rng.random() < 0.5 else None
        request = {
            "transport": self.transport,
            "bidder": self.name,
            "key": key,
            "amount": amount,
            "max_amount": max_amount,
            "sent_at": datetime.now(UTC),
        }
        if self.socket is not None:
            answer = ws_answer(await self.socket.ask({"type": "NEW_BID", "request_id": key, **body}), **request)
        else:
            loop = asyncio.get_running_loop()
            status, reply = await loop.run_in_executor(pool, rest_bid, self.server, lot_id, self.token, body, key)
            answer = rest_answer(status, reply, **request)
        if answer.min_next_bid:
            self.min_next_bid = max(self.min_next_bid, Decimal(answer.min_next_bid))
        self.answers.append(answer)
        return answer


async def open_sockets(urls_and_names: list[tuple[str, str]]) -> list[Socket]:
    at_once = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def one(url: str, name: str) -> Socket:
        async with at_once:
            return await Socket.open(url, name)

    opened = await asyncio.gather(*(one(url, name) for url, name in urls_and_names), return_exceptions=True)
    if failed := [s for s in opened if isinstance(s, BaseException)]:
        await close_all([s for s in opened if isinstance(s, Socket)])
        raise failed[0]
    return opened


async def close_all(sockets: list[Socket]) -> None:
    await asyncio.gather(*(s.close() for s in sockets))


def make_bidders(lot: Lot, servers: list[ServeProcess], users, tokens: list[str]) -> list[Bidder]:
    """Half the bidders on sockets, half over REST; each kind spread over both processes."""
    return [
        Bidder(
            name=user.username,
            token=token,
            transport="ws" if i % 2 else "rest",
            server=servers[(i // 2) % len(servers)],
            min_next_bid=lot.starting_price,
            rng=random.Random(i),
        )
        for i, (user, token) in enumerate(zip(users, tokens, strict=True))
    ]


def watcher_urls(lot: Lot, servers: list[ServeProcess], tokens: list[str], count: int) -> list[tuple[str, str]]:
    """`count` watchers alternating between the processes, every other one logged in."""
    return [
        (
            ws_url(servers[i % len(servers)], lot.pk, tokens[i // 2] if i % 2 else None),
            f"watcher {i} ({'logged in' if i % 2 else 'anonymous'}, {servers[i % len(servers)].url})",
        )
        for i in range(count)
    ]


def assert_watchers_saw_every_event(sockets: list[Socket], events: list[dict]) -> None:
    """Every room event stored, exactly once, in contiguous seq order, on every socket."""
    for socket in sockets:
        seen = socket.room_events()
        assert [e["seq"] for e in seen] == [e["seq"] for e in events], f"{socket.name}: seqs differ"
        assert seen == events, f"{socket.name}: frames differ from the stored events"


def assert_no_credentials_logged(servers: list[ServeProcess], lot_id: int) -> None:
    """Clients sent JWTs as `?token=` and `Authorization: Bearer`; no log line holds one."""
    for server in servers:
        output = server.output()
        # The check means something only if the bids were logged.
        assert f"/api/lots/{lot_id}/bids/" in output, f"{server.url} logged no bid request"
        assert "eyJ" not in output, f"{server.url} logged a JWT"
        assert "Bearer " not in output and "token=" not in output, f"{server.url} logged a credential"


def summary(answers: list[Answer]) -> Counter:
    return Counter((a.transport, a.code) for a in answers)


def unanswered(bidders: list[Bidder]) -> str:
    """For a failure message: the bidders with unexpected answers, and what their sockets got besides room events."""
    lines = []
    for bidder in bidders:
        odd = [a for a in bidder.answers if a.code not in BID_CODES | {"lot_closed"}]
        if odd:
            frames = [f for f in bidder.socket.frames if "seq" not in f] if bidder.socket else []
            lines.append(
                f"{bidder.name} ({bidder.transport}, {bidder.server.url}): {Counter(a.code for a in odd)}, "
                f"first sent {odd[0].sent_at:%H:%M:%S.%f}; socket frames {Counter(f['type'] for f in frames)}, "
                f"errors {[f for f in frames if f['type'] == 'ERROR'][:3]}, "
                f"answers after the timeout came {bidder.socket.late_answers if bidder.socket else []} s after the request"
            )
    return "\n".join(lines[:20])


# --- 1. The storm --------------------------------------------------------------------------------


async def run_room(
    lot: Lot, servers: list[ServeProcess], bidders: list[Bidder], watcher_tokens: list[str], watchers: int, bid_loop
) -> dict:
    """Open the watchers' and socket bidders' sockets, run `bid_loop(bidder, pool)` for every bidder at once,
    then wait until every socket has the lot's last event."""
    urls = watcher_urls(lot, servers, watcher_tokens, watchers)
    socket_bidders = [b for b in bidders if b.transport == "ws"]
    urls += [(ws_url(b.server, lot.pk, b.token), f"bidder {b.name} ({b.server.url})") for b in socket_bidders]
    sockets = await open_sockets(urls)
    try:
        for bidder, socket in zip(socket_bidders, sockets[watchers:], strict=True):
            bidder.socket = socket
        # A thread per REST bidder: urllib blocks.
        with ThreadPoolExecutor(max_workers=len(bidders)) as pool:
            started = time.monotonic()
            await asyncio.gather(*(bid_loop(b, pool) for b in bidders))
            elapsed = time.monotonic() - started
        final_seq = await asyncio.to_thread(stored, lambda: Lot.objects.get(pk=lot.pk).seq)
        for socket in sockets:
            await socket.wait_for_seq(final_seq)
    finally:
        await close_all(sockets)
    return {"elapsed": elapsed, "sockets": sockets}


def test_bid_storm_over_rest_and_websocket_on_two_processes(make_lot, make_user):
    lot = make_lot(starting_price="1.00", ends_at=timezone.now() + timedelta(hours=1))
    users = [make_user(f"storm{i:03d}") for i in range(BIDDERS)]
    tokens = [access_token_for(u) for u in users]
    watcher_tokens = [access_token_for(make_user(f"watcher{i:03d}")) for i in range(WATCHERS // 2)]

    with live_server_processes(2, env=server_env(), access_log=True) as servers:
        bidders = make_bidders(lot, servers, users, tokens)

        async def bid_all(bidder: Bidder, pool: ThreadPoolExecutor) -> None:
            for _ in range(BIDS_EACH):
                await bidder.bid(lot.pk, pool)

        run = asyncio.run(run_room(lot, servers, bidders, watcher_tokens, WATCHERS, bid_all))
        assert_no_credentials_logged(servers, lot.pk)
        answers = [a for b in bidders for a in b.answers]
        codes = summary(answers)
        accepted = [a for a in answers if a.code == "accepted"]
        print(
            f"\nstorm {BIDDERS} bidders x {BIDS_EACH} bids, {WATCHERS} watchers: {len(answers)} sent, "
            f"{len(accepted)} accepted in {run['elapsed']:.1f} s ({len(answers) / run['elapsed']:.0f} answers/s, "
            f"{len(accepted) / run['elapsed']:.1f} accepted/s); "
            f"{dict(sorted(codes.items()))}"
        )
        # Every request answered, by the rules: none hung, no 5xx, no code the rules would not give.
        # (Inside the block: a failure shows what the servers logged.)
        assert len(answers) == BIDDERS * BIDS_EACH
        assert {a.code for a in answers} <= BID_CODES, f"{codes}\n{unanswered(bidders)}"
    assert codes[("rest", "bid_too_low")] + codes[("ws", "bid_too_low")] > 0, "no bid lost a race: not a storm"

    lot.refresh_from_db()
    bids = list(Bid.objects.filter(lot=lot).select_related("bidder").order_by("id"))
    public = [b for b in bids if not b.raises_max_only]
    amounts = [b.amount for b in public]
    assert len(set(amounts)) == len(amounts), "two public bids at the same price"
    assert all(a < b for a, b in pairwise(amounts)), "the public price went down"

    # No lost and no phantom bid: the accepted answers are exactly the stored own bids.
    own = {b.id: b for b in bids if not b.is_proxy}
    assert sorted(a.bid_id for a in accepted) == sorted(own), "accepted answers and stored own bids differ"
    for answer in accepted:
        row = own[answer.bid_id]
        assert (row.bidder.username, row.idempotency_key) == (answer.bidder, answer.key), answer
        assert not answer.replayed

    # The lot is what a replay of its bid log gives.
    _, leader, ceiling = replay_leaders(bids)[-1]
    assert (lot.current_price, lot.high_bidder_id, lot.high_max_amount) == (public[-1].amount, leader, ceiling)
    assert lot.bid_count == len(public)
    events = lot_events(lot)
    assert [e["seq"] for e in events] == list(range(1, lot.seq + 1))
    assert [(e["type"], e["bid"]["id"]) for e in events] == [("NEW_BID", b.id) for b in public]
    assert [e["lot"]["current_price"] for e in events] == [str(a) for a in amounts]

    assert_watchers_saw_every_event(run["sockets"], events)


# --- 2. Close exactly once under load ------------------------------------------------------------

SOFT_CLOSE_SECONDS = 2
FIRST_END_SECONDS = 4
HARD_END_SECONDS = 8
# Bidders go on this long after the hard end.
BID_PAST_END_SECONDS = 2


def test_a_soft_closing_lot_closes_exactly_once_while_bids_race_its_end(make_lot, make_user, seller):
    users = [make_user(f"late{i:03d}") for i in range(LATE_BIDDERS)]
    tokens = [access_token_for(u) for u in users]
    watcher_tokens = [access_token_for(make_user(f"lwatcher{i:03d}")) for i in range(LATE_WATCHERS // 2)]

    with live_server_processes(2, env=server_env(), access_log=True) as servers, clock_processes() as clocks:
        clocks.start(2)
        now = timezone.now()
        lot = make_lot(
            starting_price="1.00",
            ends_at=now + timedelta(seconds=FIRST_END_SECONDS),
            hard_ends_at=now + timedelta(seconds=HARD_END_SECONDS),
            soft_close_seconds=SOFT_CLOSE_SECONDS,
        )
        bidders = make_bidders(lot, servers, users, tokens)
        stop_at = lot.hard_ends_at + timedelta(seconds=BID_PAST_END_SECONDS)

        async def bid_until_after_the_end(bidder: Bidder, pool: ThreadPoolExecutor) -> None:
            while datetime.now(UTC) < stop_at:
                await bidder.bid(lot.pk, pool)
                # A beat between bids, so the sockets' room frames keep their prices fresh.
                await asyncio.sleep(bidder.rng.uniform(0.01, 0.05))

        run = asyncio.run(run_room(lot, servers, bidders, watcher_tokens, LATE_WATCHERS, bid_until_after_the_end))
        # Each clock logs its round once its e-mails are out.
        deadline = time.monotonic() + 30
        while sum(c.closed_count() for c in clocks.started) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        closed_by_clock = [c.closed_count() for c in clocks.started]
        assert_no_credentials_logged(servers, lot.pk)
        answers = [a for b in bidders for a in b.answers]
        codes = summary(answers)
        assert {a.code for a in answers} <= BID_CODES | {"lot_closed"}, f"{codes}\n{unanswered(bidders)}"

    lot.refresh_from_db()
    bids = list(Bid.objects.filter(lot=lot).order_by("id"))
    public = [b for b in bids if not b.raises_max_only]
    print(
        f"\nclose race {LATE_BIDDERS} bidders, {LATE_WATCHERS} watchers: {len(answers)} sent, "
        f"{len(public)} public bids, ended {(lot.ends_at - lot.created_at).total_seconds():.2f} s after creation "
        f"(first end {FIRST_END_SECONDS} s, hard end {HARD_END_SECONDS} s), closed {(lot.closed_at - lot.ends_at).total_seconds() * 1000:.0f} ms "
        f"after it by clocks {closed_by_clock}; {dict(sorted(codes.items()))}"
    )
    assert lot.status == LotStatus.CLOSED
    assert lot.ends_at <= lot.hard_ends_at
    assert lot.ends_at <= lot.closed_at
    assert sum(closed_by_clock) == 1, closed_by_clock
    # Bids came right up to the end, none was accepted at or after it.
    assert public[-1].created_at > lot.ends_at - timedelta(seconds=SOFT_CLOSE_SECONDS)
    late = [(b.id, b.created_at) for b in bids if b.created_at >= lot.ends_at or b.created_at > lot.closed_at]
    assert late == [], f"accepted at or after the end {lot.ends_at}: {late}"
    after_end = [a for a in answers if a.sent_at >= lot.ends_at]
    assert after_end, "nobody bid after the end"
    assert {a.code for a in after_end} == {"lot_closed"}, summary(after_end)

    # One close: one AUCTION_ENDED, last; one WON, one LOT_SOLD; the price is the last bid's.
    events = lot_events(lot)
    assert [e["seq"] for e in events] == list(range(1, lot.seq + 1))
    assert [e["type"] for e in events].count("AUCTION_ENDED") == 1
    assert events[-1]["type"] == "AUCTION_ENDED"
    assert (lot.final_price, lot.winner_id) == (public[-1].amount, lot.high_bidder_id)
    assert lot.final_price == lot.current_price
    assert (events[-1]["lot"]["final_price"], events[-1]["lot"]["winner"]) == (
        str(lot.final_price),
        LotAlias.objects.get(lot=lot, user=lot.winner).label,
    )
    notices = Counter(Notification.objects.filter(lot=lot, type__in=["WON", "LOT_SOLD"]).values_list("type", "user"))
    assert notices == {("WON", lot.winner_id): 1, ("LOT_SOLD", seller.pk): 1}, notices
    assert_watchers_saw_every_event(run["sockets"], events)


# --- 3. One idempotency key, many times --------------------------------------------------------------


def rest_same_key_at_once(servers: list[ServeProcess], lot_id: int, token: str, body: dict, key: str) -> list[tuple]:
    """Send the same request SAME_KEY_TIMES at once, alternating between the processes."""
    barrier = threading.Barrier(SAME_KEY_TIMES)

    def send(i: int) -> tuple[int, dict]:
        barrier.wait()
        return rest_bid(servers[i % len(servers)], lot_id, token, body, key)

    with ThreadPoolExecutor(max_workers=SAME_KEY_TIMES) as pool:
        return list(pool.map(send, range(SAME_KEY_TIMES)))


async def ws_same_key(servers: list[ServeProcess], lot_id: int, token: str, body: dict, key: str) -> dict:
    """The same NEW_BID frame SAME_KEY_TIMES at once over 10 sockets on both processes, then in a row on one."""
    sockets = await open_sockets([(ws_url(servers[i % 2], lot_id, token), f"socket {i}") for i in range(10)])
    try:
        frame = {"type": "NEW_BID", "request_id": key, **body}
        at_once = await asyncio.gather(*(sockets[i % 10].ask(frame) for i in range(SAME_KEY_TIMES)))
        in_a_row = [await sockets[0].ask(frame) for _ in range(SAME_KEY_TIMES)]
        conflict = await sockets[1].ask({**frame, "amount": str(Decimal(body["amount"]) + 1)})
    finally:
        await close_all(sockets)
    return {"at_once": at_once, "in_a_row": in_a_row, "conflict": conflict}


def test_one_idempotency_key_sent_many_times_bids_once_over_both_transports(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    alice, bob = access_token_for(bidder), access_token_for(other_bidder)
    rest_key, ws_key = "rest-" + uuid.uuid4().hex, "ws-" + uuid.uuid4().hex

    with live_server_processes(2, env=server_env()) as servers:
        rest_at_once = rest_same_key_at_once(servers, lot.pk, alice, {"amount": "10.00"}, rest_key)
        rest_in_a_row = [
            rest_bid(servers[i % 2], lot.pk, alice, {"amount": "10.00"}, rest_key) for i in range(SAME_KEY_TIMES)
        ]
        rest_conflict = rest_bid(servers[1], lot.pk, alice, {"amount": "12.00"}, rest_key)
        ws = asyncio.run(ws_same_key(servers, lot.pk, bob, {"amount": "11.00", "max_amount": "15.00"}, ws_key))
        # A key is the bidder's, whichever transport carries the retry.
        ws_retried_over_rest = rest_bid(servers[0], lot.pk, bob, {"amount": "11.00", "max_amount": "15.00"}, ws_key)

    rest_answers = rest_at_once + rest_in_a_row
    assert {status for status, _ in rest_answers} == {201}, Counter(status for status, _ in rest_answers)
    [rest_bid_id] = {body["bid"]["id"] for _, body in rest_answers}
    assert [body["replayed"] for _, body in rest_at_once].count(False) == 1
    assert all(body["replayed"] for _, body in rest_in_a_row)
    assert (rest_conflict[0], rest_conflict[1]["code"]) == (409, "idempotency_conflict")

    ws_answers = ws["at_once"] + ws["in_a_row"]
    assert all(a is not None and a["type"] == "BID_ACCEPTED" for a in ws_answers), ws_answers
    [ws_bid_id] = {a["bid"]["id"] for a in ws_answers}
    assert [a["replayed"] for a in ws["at_once"]].count(False) == 1
    assert all(a["replayed"] for a in ws["in_a_row"])
    assert (ws["conflict"]["type"], ws["conflict"]["code"]) == ("BID_REJECTED", "idempotency_conflict")
    assert ws_retried_over_rest[0] == 201
    assert (ws_retried_over_rest[1]["bid"]["id"], ws_retried_over_rest[1]["replayed"]) == (ws_bid_id, True)

    own = Bid.objects.filter(lot=lot, is_proxy=False).order_by("id")
    assert [(b.id, b.idempotency_key) for b in own] == [(rest_bid_id, rest_key), (ws_bid_id, ws_key)]
    lot.refresh_from_db()
    assert (lot.bid_count, lot.seq, lot.current_price) == (2, 2, Decimal("11.00"))
    print(
        f"\nidempotency: {len(rest_answers)} REST answers -> bid {rest_bid_id}, "
        f"{len(ws_answers)} WebSocket answers -> bid {ws_bid_id}"
    )
