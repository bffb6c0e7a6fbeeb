"""The fan-out baseline: a minimal server on the `websockets` library broadcasting NEW_BID-shaped frames.

It accepts any socket on `/ws/lots/<id>/` (sending it a LOT_STATUS-shaped frame), and on each ("phase", rate, seconds) command
broadcasts a frame per 1/rate s (open loop), stamping `bid.created_at` like the app does
(ISO 8601, milliseconds) just before the broadcast.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import websockets


def frame(seq: int) -> str:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    price = f"{100 + seq}.00"
    return json.dumps(
        {
            "type": "NEW_BID",
            "lot_id": 1,
            "seq": seq,
            "bid": {"id": seq, "amount": price, "bidder": "bench1", "created_at": now, "is_proxy": False},
            "lot": {
                "current_price": price,
                "min_next_bid": f"{100 + seq}.01",
                "bid_count": seq,
                "high_bidder": "bench1",
                "reserve_met": True,
                "ends_at": "2026-11-21T12:00:00Z",
            },
        }
    )


# What a socket gets on joining, like the app's LOT_STATUS (S3 counts a socket open once it arrives).
INITIAL_STATE = json.dumps({"type": "LOT_STATUS", "seq": 0, "lot": json.loads(frame(0))["lot"]})


async def _serve(port: int, commands, out) -> None:
    clients: set = set()

    async def handler(sock) -> None:
        clients.add(sock)
        try:
            await sock.send(INITIAL_STATE)
            await sock.wait_closed()
        finally:
            clients.discard(sock)

    seq = 0
    async with websockets.serve(handler, "127.0.0.1", port, ping_interval=None, max_size=2**16):
        out.put(("ready", port))
        while True:
            command = await asyncio.to_thread(commands.get)
            if command[0] == "stop":
                break
            _, rate, seconds = command
            first = seq + 1
            start = time.perf_counter()
            i = 0
            while (scheduled := start + i / rate) < start + seconds:
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                seq += 1
                websockets.broadcast(clients, frame(seq))
                i += 1
            out.put(("done", first, seq, len(clients)))


def run_baseline(port: int, commands, out) -> None:
    from bench.clients import raise_open_files_limit

    raise_open_files_limit()
    asyncio.run(_serve(port, commands, out))
