"""S4, reads: the open-lot listing against a constant response through the same stack, while bids arrive."""

from __future__ import annotations

import json
import threading

from bench import clients
from bench.harness import CLIENT_TIMEOUT, bidding, run_clients, server_env
from bench.s2_fanout import S2_BIDDERS
from bench.servers import log, manage
from bench.stats import percentiles

READ_PATH = "/api/lots/?status=open"


# S4's baseline (bench/urls.py): the same server answering the listing's bytes, constant.
CONSTANT_PATH = "/bench/constant/?status=open"


# Bids on one of the listed lots while S4 reads, from S2's bidders.
S4_BIDS_PER_SECOND = 10


S4_P99_LIMIT_MS = 50.0


def reading(urls: list[str], path: str, *, concurrency: int, seconds: float) -> dict:
    """`concurrency` keep-alive connections GETting `path` in a closed loop, spread over the servers."""
    per_process = [[] for _ in range(min(2, concurrency))]
    for k in range(concurrency):
        per_process[k % len(per_process)].append(urls[k % len(urls)])
    params = [{"bases": bases, "path": path, "duration": seconds} for bases in per_process]
    results = run_clients(clients.run_readers, params)
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r["codes"].items():
            codes[code] = codes.get(code, 0) + n
    ok = codes.pop("200", 0)
    latencies = [x for r in results for x in r["latencies_ms"]]
    elapsed = max(r["elapsed"] for r in results)
    return {"concurrency": concurrency, "rate": ok / elapsed, "errors": codes, **percentiles(latencies)}


def scenario_s4(args, size, urls, seed) -> dict:
    """The listing and its constant-response baseline, closed loop at each concurrency, while bids arrive."""
    lot_id = seed["open_lots"][0]
    runs: dict[str, list[dict]] = {"app": [], "constant": []}
    background: list[dict] = []
    for c in size["concurrency"]:
        for server, path in (("app", READ_PATH), ("constant", CONSTANT_PATH)):
            log(f"S4 {server} reads c={c}, {S4_BIDS_PER_SECOND} bids/s beside")
            bids: dict = {}
            bidder = threading.Thread(
                target=lambda out=bids: out.update(
                    bidding(
                        urls,
                        seed["tokens"][-2 * S2_BIDDERS :],
                        transport="ws",
                        lot_id=lot_id,
                        bidders=2,
                        seconds=size["seconds"] + 1,
                        t0=seed["t0"],
                        rate=S4_BIDS_PER_SECOND,
                    )
                ),
                daemon=True,
            )
            bidder.start()
            runs[server].append(reading(urls, path, concurrency=c, seconds=size["seconds"]))
            bidder.join(CLIENT_TIMEOUT)
            background.append({"server": server, "concurrency": c, **bids})
    queries = json.loads(manage(server_env(args), "-m", "bench.queries", READ_PATH))[READ_PATH]
    return {
        "path": READ_PATH,
        "constant_path": CONSTANT_PATH,
        "open_lots": size["open_lots"],
        "bids_per_second": S4_BIDS_PER_SECOND,
        "runs": runs["app"],
        "constant": runs["constant"],
        "bidding": [
            {k: b.get(k) for k in ("server", "concurrency", "offered", "accepted", "rejected")} for b in background
        ],
        "queries_per_request": queries["queries"],
    }


def best_under(runs: list[dict], p99_limit_ms: float) -> dict | None:
    """The run with the highest rate among those whose p99 stays under the limit."""
    fitting = [r for r in runs if r["p99_ms"] is not None and r["p99_ms"] < p99_limit_ms]
    return max(fitting, key=lambda r: r["rate"]) if fitting else None
