"""Load generators, each run in its own client process (multiprocessing, spawn).

Every entry point takes a `params` dict, a `ready` queue (it puts one message when
connected), a `go` event and returns its results on `out`. Times: `time.perf_counter()`
for send-to-answer latency; `time.time()` (the same clock as the servers on this
machine) for commit-to-client delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

import websockets

ANSWER_TIMEOUT = 10.0
DRAIN_SECONDS = 20.0
DRAIN_QUIET_SECONDS = 1.0


def price_now(t0: float) -> str:
    """An amount that grows with the wall clock (1 cent per 10 µs), so concurrent bidders rarely collide."""
    cents = 100 + int((time.time() - t0) * 100_000)
    return f"{cents // 100}.{cents % 100:02d}"


def ws_url(base: str, lot_id: int, token: str | None) -> str:
    url = base.replace("http://", "ws://") + f"/ws/lots/{lot_id}/"
    return url + (f"?token={token}" if token else "")


async def ws_connect(base: str, lot_id: int, token: str | None):
    return await websockets.connect(
        ws_url(base, lot_id, token), origin=base, max_size=2**22, open_timeout=30, ping_interval=None
    )


class WsBidder:
    """Two users' sockets, bidding in turn (a leader may not outbid themselves)."""

    def __init__(self, base: str, lot_id: int, tokens: list[str], t0: float) -> None:
        self.base, self.lot_id, self.tokens, self.t0 = base, lot_id, tokens, t0
        self.turn = 0
        self.pending: dict[str, asyncio.Future] = {}
        self.accepted_ids: list[int] = []

    async def open(self) -> None:
        self.sockets = [await ws_connect(self.base, self.lot_id, t) for t in self.tokens]
        self.readers = [asyncio.create_task(self._read(s)) for s in self.sockets]

    async def _read(self, sock) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in sock:
                if '"request_id"' not in text:
                    continue  # room events (NEW_BID, USERS_COUNT): received and dropped
                frame = json.loads(text)
                future = self.pending.pop(frame.get("request_id") or "", None)
                if frame.get("code") == "accepted":
                    self.accepted_ids.append(frame["bid"]["id"])
                if future and not future.done():
                    code = frame.get("code", "error")
                    future.set_result(code if frame["type"] != "ERROR" else f"error:{code}")

    async def bid(self) -> str:
        sock = self.sockets[self.turn % len(self.sockets)]
        self.turn += 1
        request_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        await sock.send(json.dumps({"type": "NEW_BID", "amount": price_now(self.t0), "request_id": request_id}))
        try:
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            self.pending.pop(request_id, None)
            return "timeout"

    async def close(self) -> None:
        for sock in self.sockets:
            await sock.close()
        for reader in self.readers:
            reader.cancel()


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client: enough for JSON POSTs to daphne, without a dependency."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(
        self, method: str, path: str, *, token: str | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: application/json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split()[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        data = b""
        while size := int((await self.reader.readline()).strip(), 16):
            data += await self.reader.readexactly(size)
            await self.reader.readline()
        await self.reader.readline()
        return status, data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class RestBidder:
    """Two users bidding in turn over one keep-alive connection."""

    def __init__(self, base: str, lot_id: int, tokens: list[str], t0: float) -> None:
        self.connection = HttpConnection(base)
        self.lot_id, self.tokens, self.t0 = lot_id, tokens, t0
        self.turn = 0
        self.accepted_ids: list[int] = []

    async def open(self) -> None:
        await self.connection.open()

    async def bid(self) -> str:
        token = self.tokens[self.turn % len(self.tokens)]
        self.turn += 1
        body = json.dumps({"amount": price_now(self.t0)}).encode()
        try:
            status, data = await asyncio.wait_for(
                self.connection.request("POST", f"/api/lots/{self.lot_id}/bids/", token=token, body=body),
                ANSWER_TIMEOUT,
            )
        except TimeoutError:
            await self.connection.close()
            await self.connection.open()
            return "timeout"
        if status == 201:
            self.accepted_ids.append(json.loads(data)["bid"]["id"])
            return "accepted"
        try:
            return json.loads(data).get("code", f"http_{status}")
        except ValueError:
            return f"http_{status}"

    async def close(self) -> None:
        await self.connection.close()


def _wait(event, seconds: float) -> None:
    if not event.wait(seconds):
        raise TimeoutError("the orchestrator never said go")


async def _bidding(params: dict, ready, go) -> dict:
    """Closed loop (`rate` None: every bidder sends again on its answer) or open loop at `rate` bids/s."""
    kind = WsBidder if params["transport"] == "ws" else RestBidder
    bidders = [kind(base, params["lot_id"], tokens, params["t0"]) for base, tokens in params["bidders"]]
    await asyncio.gather(*(b.open() for b in bidders))
    ready.put(("ready", len(bidders)))
    await asyncio.to_thread(_wait, go, 120)
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    start = time.perf_counter()
    deadline = start + params["duration"]

    def record(code: str, since: float) -> None:
        codes[code] += 1
        if code == "accepted":
            latencies.append((time.perf_counter() - since) * 1000)

    if params.get("rate") is None:

        async def loop(bidder) -> None:
            while (now := time.perf_counter()) < deadline:
                record(await bidder.bid(), now)

        await asyncio.gather(*(loop(b) for b in bidders))
    else:
        # Open loop: sends are scheduled by the clock; latency counts from the scheduled time,
        # so a slow answer delays (and is charged to) the bids queued behind it.
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in bidders]

        async def drain(bidder, queue) -> None:
            while (scheduled := await queue.get()) is not None:
                record(await bidder.bid(), scheduled)

        workers = [asyncio.create_task(drain(b, q)) for b, q in zip(bidders, queues, strict=True)]
        interval = 1.0 / params["rate"]
        i = 0
        while (scheduled := start + params.get("offset", 0.0) + i * interval) < deadline:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            queues[i % len(queues)].put_nowait(scheduled)
            i += 1
        for queue in queues:
            queue.put_nowait(None)
        await asyncio.wait(workers, timeout=ANSWER_TIMEOUT * 2)
        codes["offered"] = i
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(b.close() for b in bidders), return_exceptions=True)
    return {
        "latencies_ms": latencies,
        "codes": dict(codes),
        "elapsed": elapsed,
        "wall_end": time.time(),
        "accepted_ids": [bid_id for b in bidders for bid_id in b.accepted_ids],
    }


def run_bidders(params: dict, ready, go, out) -> None:
    try:
        out.put(("result", asyncio.run(_bidding(params, ready, go))))
    except BaseException as exc:
        out.put(("error", repr(exc)))
        ready.put(("error", repr(exc)))


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# Cheap reads of a NEW_BID frame (the top-level `seq` comes first in both servers' frames): no JSON parse per frame.
_SEQ = re.compile(r'"seq":\s*(\d+)')
_CREATED_AT = re.compile(r'"created_at":\s*"([^"]+)"')


async def _watching(params: dict, ready, go, stop) -> dict:
    """Open `len(params["urls"])` anonymous sockets; record every NEW_BID's seq and when each socket received it.

    Kept cheap (S2 runs up to 10,000 sockets on a shared 2-CPU machine): per frame one substring
    test, one regex and `time.time()`; the stamp (`bid.created_at`) is read once per event per
    process, and latencies are computed after the run. Fails (so the cell is reported as not
    finished) unless every socket connected and the joins' frames settled within `connect_timeout`.
    """
    seqs: list[list[int]] = [[] for _ in params["urls"]]
    received: list[list[float]] = [[] for _ in params["urls"]]
    stamps: dict[int, str] = {}
    last_frame = [time.monotonic()]
    connected = [0]
    limit = asyncio.Semaphore(32)

    async def watch(i: int, url: str) -> None:
        async with limit:
            sock = await websockets.connect(
                url, origin=params["origin"][i], max_size=2**22, open_timeout=60, ping_interval=None
            )
        connected[0] += 1
        mine_seqs, mine_received = seqs[i], received[i]
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in sock:
                now = time.time()
                last_frame[0] = time.monotonic()
                if '"NEW_BID"' not in text:
                    continue
                seq = int(_SEQ.search(text).group(1))
                mine_seqs.append(seq)
                mine_received.append(now)
                if seq not in stamps:
                    stamps[seq] = _CREATED_AT.search(text).group(1)

    tasks = [asyncio.create_task(watch(i, url)) for i, url in enumerate(params["urls"])]
    timeout = params.get("connect_timeout", 120)
    connect_deadline = time.monotonic() + timeout
    # Connected and settled: every join sends USERS_COUNT to the room; wait for that storm to pass.
    while True:
        await asyncio.sleep(0.2)
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} watchers failed to connect: {failed[0].exception()!r}")
        if connected[0] == len(tasks) and time.monotonic() - last_frame[0] > params.get("settle", 1.0):
            break
        if time.monotonic() > connect_deadline:
            state = "connected" if connected[0] < len(tasks) else "connected, but the joins' frames did not settle"
            raise RuntimeError(f"{connected[0]}/{len(tasks)} {state} within {timeout:.0f} s")
    ready.put(("ready", len(tasks)))
    await asyncio.to_thread(_wait, stop, params.get("max_seconds", 600))
    # Drain: late events still count as delivered (their latency shows how late), for at most DRAIN_SECONDS.
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_deadline and time.monotonic() - last_frame[0] < DRAIN_QUIET_SECONDS:
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    at = {seq: parse_time(stamp) for seq, stamp in stamps.items()}
    lags = [
        [(now - at[seq]) * 1000 for seq, now in zip(mine, times, strict=True)]
        for mine, times in zip(seqs, received, strict=True)
    ]
    return {"seqs": seqs, "lags_ms": lags}


def run_watchers(params: dict, ready, go, stop, out) -> None:
    try:
        out.put(("result", asyncio.run(_watching(params, ready, go, stop))))
    except BaseException as exc:
        out.put(("error", repr(exc)))
        ready.put(("error", repr(exc)))


async def _reading(params: dict, ready, go) -> dict:
    """Closed loop: every connection GETs `path` again as soon as the previous answer is read."""
    connections = [HttpConnection(base) for base in params["bases"]]
    await asyncio.gather(*(c.open() for c in connections))
    ready.put(("ready", len(connections)))
    await asyncio.to_thread(_wait, go, 120)
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    start = time.perf_counter()
    deadline = start + params["duration"]

    async def loop(connection) -> None:
        while (sent := time.perf_counter()) < deadline:
            status, _ = await asyncio.wait_for(connection.request("GET", params["path"]), ANSWER_TIMEOUT)
            codes[str(status)] += 1
            if status == 200:
                latencies.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(loop(c) for c in connections))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    return {"latencies_ms": latencies, "codes": dict(codes), "elapsed": elapsed}


def run_readers(params: dict, ready, go, out) -> None:
    try:
        out.put(("result", asyncio.run(_reading(params, ready, go))))
    except BaseException as exc:
        out.put(("error", repr(exc)))
        ready.put(("error", repr(exc)))


def raise_open_files_limit() -> int:
    """Lift this process's soft limit on open files to the hard one (thousands of sockets); return it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def _holding(params: dict, ready, go, release, out) -> dict:
    """S3: open every socket in `urls` (at most `in_flight` handshakes at once), hold them idle, close on release.

    A socket counts as open once its first frame (the server's initial state) arrives;
    frames after that (presence counts) are read and dropped so that no buffer fills.
    """
    raise_open_files_limit()
    ready.put(("ready", len(params["urls"])))
    await asyncio.to_thread(_wait, go, 300)
    limit = asyncio.Semaphore(params.get("in_flight", 64))
    sockets: list = []
    failures: Counter[str] = Counter()

    async def drain(sock) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in sock:
                pass

    async def open_one(url: str, origin: str) -> None:
        async with limit:
            try:
                sock = await websockets.connect(url, origin=origin, open_timeout=60, ping_interval=None)
                await asyncio.wait_for(sock.recv(), 60)
            except Exception as exc:  # Counted by kind: a refused socket is a result, not a crash.
                failures[type(exc).__name__] += 1
                return
        sockets.append((sock, asyncio.create_task(drain(sock))))

    start = time.perf_counter()
    await asyncio.gather(*(open_one(u, o) for u, o in zip(params["urls"], params["origins"], strict=True)))
    ramp = time.perf_counter() - start
    out.put(("connected", {"open": len(sockets), "failed": dict(failures), "seconds": ramp}))
    await asyncio.to_thread(_wait, release, params.get("max_seconds", 900))
    start = time.perf_counter()

    async def close_one(sock, reader) -> None:
        async with limit:
            await sock.close()
        reader.cancel()

    await asyncio.gather(*(close_one(s, r) for s, r in sockets), return_exceptions=True)
    return {"open": len(sockets), "close_seconds": time.perf_counter() - start}


def run_holders(params: dict, ready, go, release, out) -> None:
    try:
        out.put(("result", asyncio.run(_holding(params, ready, go, release, out))))
    except BaseException as exc:
        out.put(("error", repr(exc)))
        ready.put(("error", repr(exc)))
