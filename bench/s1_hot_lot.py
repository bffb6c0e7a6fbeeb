"""S1, a hot lot: bidders over WebSocket and REST on one lot against pgbench running the bid's SQL."""

from __future__ import annotations

import itertools
import json
import time

import psycopg

from bench import pgbench
from bench.harness import bidding, server_env
from bench.servers import log, manage

OPEN_LOOP_SHARE = 0.7


OPEN_LOOP_BIDDERS = 16


def invariants(database_url: str, lot_id: int, answered: list[int]) -> dict:
    """What must hold on the lot after S1's bids; `answered`: the ids of the bids the clients were told were accepted."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, amount FROM bids_bid WHERE lot_id = %s AND NOT raises_max_only ORDER BY id", [lot_id]
        ).fetchall()
        amounts = [amount for _, amount in rows]
        bid_count, seq = conn.execute("SELECT bid_count, seq FROM lots_lot WHERE id = %s", [lot_id]).fetchone()
        events = conn.execute("SELECT count(*), max(seq) FROM bids_lotevent WHERE lot_id = %s", [lot_id]).fetchone()
        # A leader's bid may only raise their maximum: stored and answered, with no public price.
        stored = {row[0] for row in conn.execute("SELECT id FROM bids_bid WHERE lot_id = %s", [lot_id])}
    duplicates = len(amounts) - len(set(amounts))
    ordered = all(a <= b for a, b in itertools.pairwise(amounts))
    # Every answer names a stored bid of the lot, and no bid was answered twice.
    matched = len(set(answered)) == len(answered) and set(answered) <= stored
    return {
        "bids": len(amounts),
        "bid_count": bid_count,
        "duplicate_prices": duplicates,
        "non_decreasing": ordered,
        "bid_count_matches": bid_count == len(amounts),
        "events_match_seq": events[0] == seq and (events[1] or 0) == seq,
        "answers": len(answered),
        "answers_matched": matched,
        "hold": duplicates == 0 and ordered and bid_count == len(amounts) and events[0] == seq and matched,
    }


def scenario_s1(args, size, urls, seed) -> dict:
    tokens, lots = seed["tokens"], seed["lots"]
    t0 = time.time()
    result: dict = {"pgbench": [], "ws": [], "rest": [], "open_loop": {}}
    if pgbench.available():
        for c in size["concurrency"]:
            log(f"S1 pgbench c={c}")
            bidders = (seed["user_ids"][0], seed["user_ids"][1])
            result["pgbench"].append(
                pgbench.run(
                    args.database_url, lot_id=lots["pgbench"], bidders=bidders, clients=c, seconds=size["seconds"]
                )
            )
    for transport in ("ws", "rest"):
        lot_id = lots[f"s1_{transport}"]
        answered: list[int] = []
        for c in size["concurrency"]:
            log(f"S1 {transport} closed loop c={c}")
            run = bidding(urls, tokens, transport=transport, lot_id=lot_id, bidders=c, seconds=size["seconds"], t0=t0)
            answered += run.pop("accepted_ids")
            result[transport].append(run)
        peak = max(r["rate"] for r in result[transport])
        rate = max(1.0, OPEN_LOOP_SHARE * peak)
        log(f"S1 {transport} open loop at {rate:.0f}/s (70 % of {peak:.0f}/s)")
        bidders = min(OPEN_LOOP_BIDDERS, (len(tokens) // 2))
        result["open_loop"][transport] = bidding(
            urls, tokens, transport=transport, lot_id=lot_id, bidders=bidders, seconds=size["seconds"], t0=t0, rate=rate
        )
        answered += result["open_loop"][transport].pop("accepted_ids")
        result[f"invariants_{transport}"] = invariants(args.database_url, lot_id, answered)
    # Statements per accepted bid, BEGIN and COMMIT included (`CaptureQueriesContext` on the bench database).
    users = [str(user_id) for user_id in seed["user_ids"][:2]]
    result["statements"] = json.loads(
        manage(server_env(args), "-m", "bench.queries", "--bids", str(lots["s1_ws"]), *users)
    )
    return result
