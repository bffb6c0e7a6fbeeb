"""Each scenario's results against its targets (`harness.TARGETS`)."""

from __future__ import annotations

from bench import clock
from bench.harness import TARGETS
from bench.s3_idle import LEAK_KIB_PER_CONNECTION
from bench.s4_reads import S4_P99_LIMIT_MS, best_under


def verdicts(results: dict) -> list[dict]:
    out = []
    s1 = results.get("s1")
    if s1 and s1["pgbench"]:
        best = max(s1["pgbench"], key=lambda r: r["rate"])
        pgbench_at = {r["concurrency"]: r["rate"] for r in s1["pgbench"]}
        for run in s1["ws"]:
            if run["concurrency"] in (1, 4) and run["concurrency"] in pgbench_at:
                ratio = run["rate"] / pgbench_at[run["concurrency"]]
                out.append(
                    {
                        "target": f"S1 WS at {run['concurrency']} bidders ≥ {TARGETS['ws_vs_pgbench']} x pgbench at "
                        f"{run['concurrency']} ({pgbench_at[run['concurrency']]:.0f}/s)",
                        "measured": f"{run['rate']:.0f}/s = {ratio:.2f} x",
                        "met": ratio >= TARGETS["ws_vs_pgbench"],
                    }
                )
        peak = max(r["rate"] for r in s1["rest"])
        ratio = peak / best["rate"]
        out.append(
            {
                "target": f"S1 REST peak ≥ {TARGETS['rest_vs_pgbench']} x pgbench best ({best['rate']:.0f}/s at c={best['concurrency']})",
                "measured": f"{peak:.0f}/s = {ratio:.2f} x",
                "met": ratio >= TARGETS["rest_vs_pgbench"],
            }
        )
    if s1 and len(s1["ws"]) > 1:
        runs = sorted(s1["ws"], key=lambda r: r["concurrency"])
        # Each concurrency against the best of the fewer bidders before it.
        kept = min(run["rate"] / max(r["rate"] for r in runs[:i]) for i, run in enumerate(runs) if i)
        out.append(
            {
                "target": f"S1 WS: more bidders keep ≥ {TARGETS['ws_more_bidders_keep']:.0%} of the rate fewer had",
                "measured": f"at worst {kept:.0%} ("
                + ", ".join(f"c={r['concurrency']} {r['rate']:.0f}/s" for r in runs)
                + ")",
                "met": kept >= TARGETS["ws_more_bidders_keep"],
            }
        )
    if s1 and s1.get("statements"):
        per_bid = s1["statements"]["statements_per_bid"]
        out.append(
            {
                "target": f"S1 statements per accepted bid ≤ {TARGETS['statements_per_bid']} (BEGIN and COMMIT included)",
                "measured": f"{per_bid:.1f} over {s1['statements']['accepted']} bids",
                "met": per_bid <= TARGETS["statements_per_bid"],
            }
        )
    if s1:
        for transport in ("ws", "rest"):
            run = s1["open_loop"].get(transport)
            if run:
                p99 = run["p99_ms"]
                out.append(
                    {
                        "target": f"S1 {transport.upper()} p99 ≤ {TARGETS['p99_at_70pct_ms']:.0f} ms at 70 % of peak ({run['offered_rate']:.0f}/s offered)",
                        "measured": f"p99 {p99:.1f} ms" if p99 is not None else "no answers",
                        "met": p99 is not None and p99 <= TARGETS["p99_at_70pct_ms"],
                    }
                )
            inv = s1.get(f"invariants_{transport}")
            if inv:
                out.append(
                    {
                        "target": f"S1 {transport.upper()} invariants hold",
                        "measured": f"{inv['bids']} bids, "
                        f"{inv['duplicate_prices']} duplicate prices, bid_count {inv['bid_count']}, "
                        f"{inv['answers']} answers {'all' if inv['answers_matched'] else 'not all'} matched to a stored bid",
                        "met": inv["hold"],
                    }
                )
    out += s2_verdicts(results.get("s2"))
    out += s3_verdicts(results.get("s3"))
    out += s4_verdicts(results.get("s4"))
    out += clock.verdicts(results.get("clock"))
    return out


def _ms_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def s2_verdicts(s2: dict | None) -> list[dict]:
    """One row per cell (watchers x rate) with the targets that apply to it, and whether the largest room finished."""
    if not s2:
        return []
    out = []
    base = {(r["watchers"], r["rate"]): r for r in s2["runs"] if r["server"] == "baseline"}
    for run in (r for r in s2["runs"] if r["server"] == "app"):
        watchers, rate = run["watchers"], run["rate"]
        b = base.get((watchers, rate))
        target = f"S2 {watchers:,} watchers x {rate}/s: 100 % delivered in order, accepted ≥ 99 % of offered"
        if watchers >= TARGETS["fanout_ratio_from_watchers"]:
            target += f", p99 ≤ {TARGETS['fanout_p99_vs_baseline']} x bare server"
        if watchers == 100 and rate == 10:
            target += f", p99 ≤ {TARGETS['fanout_100_p99_ms']:.0f} ms"
        if not run["finished"]:
            out.append({"target": target, "measured": f"did not finish: {run['reason']}", "met": False})
            continue
        met = (
            run["delivered_share"] is not None
            and run["delivered_share"] >= TARGETS["fanout_delivered_share"]
            and run["in_order"]
            and run["accepted_share"] is not None
            and run["accepted_share"] >= TARGETS["fanout_accepted_share"]
        )
        delivered = "-" if run["delivered_share"] is None else f"{run['delivered_share']:.2%}"
        measured = (
            f"{delivered} delivered, in order {run['in_order']}, accepted {run['bids_accepted']}/{run['bids_offered']}"
            f", p99 {_ms_text(run['p99_ms'])} ms"
        )
        if b is None or not b["finished"]:
            measured += ", bare server did not finish"
        else:
            ratio = run["p99_ms"] / b["p99_ms"] if b["p99_ms"] and run["p99_ms"] is not None else None
            measured += f" vs bare {_ms_text(b['p99_ms'])} ms" + (f" = {ratio:.2f} x" if ratio is not None else "")
            if watchers >= TARGETS["fanout_ratio_from_watchers"]:
                met = met and ratio is not None and ratio <= TARGETS["fanout_p99_vs_baseline"]
        if watchers >= TARGETS["fanout_ratio_from_watchers"] and (b is None or not b["finished"]):
            met = False
        if watchers == 100 and rate == 10:
            met = met and run["p99_ms"] is not None and run["p99_ms"] <= TARGETS["fanout_100_p99_ms"]
        out.append({"target": target, "measured": measured, "met": met})
    largest = TARGETS["fanout_must_finish_watchers"]
    cells = [r for r in s2["runs"] if r["server"] == "app" and r["watchers"] == largest]
    if cells:
        out.append(
            {
                "target": f"S2 {largest:,} watchers in one room over the processes complete the run",
                "measured": ", ".join(
                    f"{r['rate']}/s " + ("finished" if r["finished"] else "did not finish") for r in cells
                ),
                "met": all(r["finished"] for r in cells),
            }
        )
    return out


def _median(values: list[float]) -> float | None:
    ordered = sorted(v for v in values if v is not None)
    return ordered[len(ordered) // 2] if ordered else None


def s3_verdicts(s3: dict | None) -> list[dict]:
    if not s3:
        return []
    app, base = s3["app"], s3["baseline"]
    first = app[0]
    per_process = first["open"] / s3["processes"]
    goal = TARGETS["connections_per_process"]
    out = [
        {
            "target": f"S3 ≥ {goal:,} idle connections per process",
            "measured": f"{per_process:,.0f} per process opened of {s3['per_process']:,} asked"
            + (f", failures {first['failed']}" if first["failed"] else ""),
            "met": per_process >= goal,
        }
    ]
    rate, base_rate = _median([c["handshakes_per_s"] for c in app]), _median([c["handshakes_per_s"] for c in base])
    ratio = rate / base_rate if rate and base_rate else None
    out.append(
        {
            "target": f"S3 handshakes/s ≥ {TARGETS['handshakes_vs_baseline']} x the bare server's "
            f"({first['requested']:,} sockets vs the bare server's {base[0]['requested']:,}, from the same "
            "clients; median of the cycles)",
            "measured": f"{rate or 0:.0f}/s vs bare {base_rate or 0:.0f}/s"
            + (f" = {ratio:.2f} x" if ratio is not None else ""),
            "met": ratio is not None and ratio >= TARGETS["handshakes_vs_baseline"],
        }
    )
    idle = _median([c["idle_cpu_share"] for c in app])
    out.append(
        {
            "target": f"S3 idle CPU ≤ {TARGETS['idle_cpu_share']:.0%} of a CPU per process with "
            f"{s3['per_process']:,} idle sockets each (median of the cycles)",
            "measured": f"{idle:.1%} (bare server {_median([c['idle_cpu_share'] for c in base]):.1%})",
            "met": idle <= TARGETS["idle_cpu_share"],
        }
    )
    kib, base_kib = first["kib_per_connection"], base[0]["kib_per_connection"]
    out.append(
        {
            "target": f"S3 ≤ {TARGETS['kib_per_connection']:.0f} KiB per connection (RSS growth, first cycle)",
            "measured": f"{kib:.1f} KiB (bare server {base_kib:.1f} KiB)" if kib is not None else "no connections",
            "met": kib is not None and kib <= TARGETS["kib_per_connection"],
        }
    )
    if len(app) > 1:
        kept = sum(app[-1]["rss_after_kib"]) - sum(app[-2]["rss_after_kib"])
        per_connection = kept / max(app[-1]["open"], 1)
        # The first cycle opens the processes' Redis connections (pools); later cycles must not add to them.
        redis_first = max(app[0]["redis_clients"].values())
        redis_later = max(max(c["redis_clients"].values()) for c in app[1:])
        keys_left = app[-1]["redis_keys"]["after"] - app[0]["redis_keys"]["before"]
        out.append(
            {
                "target": "S3 nothing left after closing: no socket still counted open, no Redis key left, "
                f"the last ramp-and-close keeps at most {LEAK_KIB_PER_CONNECTION:g} KiB per connection more than "
                "the one before (the allocator's fragmentation, not growth), Redis connections no more than "
                "in the first cycle",
                "measured": f"sockets still open after closing {[c['server_open_after_close'] for c in app]}, "
                f"Redis keys {keys_left:+} after the last cycle vs before the first, "
                f"{kept:+,} KiB after cycle {len(app)} vs {len(app) - 1} "
                f"({per_connection:+.2f} KiB per connection), "
                f"Redis connections at most {redis_later} after the first cycle's {redis_first}",
                "met": per_connection <= LEAK_KIB_PER_CONNECTION
                and redis_later <= redis_first
                and keys_left <= 0
                and all(c["server_open_after_close"] == 0 for c in app),
            }
        )
    return out


def s4_verdicts(s4: dict | None) -> list[dict]:
    if not s4:
        return []
    app, constant = best_under(s4["runs"], S4_P99_LIMIT_MS), best_under(s4["constant"], S4_P99_LIMIT_MS)
    goal = TARGETS["reads_vs_constant"]
    if app and constant:
        ratio = app["rate"] / constant["rate"]
        measured = (
            f"{app['rate']:.0f}/s (c={app['concurrency']}) vs constant {constant['rate']:.0f}/s "
            f"(c={constant['concurrency']}) = {ratio:.2f} x"
        )
    else:
        ratio = None
        measured = f"no concurrency kept p99 < {S4_P99_LIMIT_MS:.0f} ms (app: {bool(app)}, constant: {bool(constant)})"
    return [
        {
            "target": f"S4 reads/s at p99 < {S4_P99_LIMIT_MS:.0f} ms ≥ {goal} x the constant response's",
            "measured": measured,
            "met": ratio is not None and ratio >= goal,
        },
        {
            "target": f"S4 ≤ {TARGETS['queries_per_read']} queries per request",
            "measured": f"{s4['queries_per_request']} queries",
            "met": s4["queries_per_request"] <= TARGETS["queries_per_read"],
        },
    ]
