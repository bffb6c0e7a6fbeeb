"""`make bench`: S1 (hot lot) and S2 (fan-out), each against its baseline, and S4 (reads), in one bounded run.

    python -m bench [--quick | --smoke] [--processes 2] [--database-url URL] [--redis-url URL]

Creates (drops first) its own PostgreSQL database and flushes its own Redis db, migrates,
starts `--processes` daphne processes on PostgreSQL + Redis, drives them from separate
client processes on loopback, and writes `<out>/<date>.json`, `.md` and PNG plots.
Every child process is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import queue
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from bench import clients, pgbench, report
from bench.servers import PROJECT_ROOT, _direct, daphnes, free_port
from bench.stats import percentiles

SIZES = {
    "full": {
        "concurrency": [1, 4, 16, 64],
        "seconds": 10,
        "watchers": [100, 1000],
        "rates": [1, 10, 50],
        "phase": 8,
        "open_lots": 200,
    },
    "quick": {
        "concurrency": [1, 4, 16],
        "seconds": 5,
        "watchers": [100, 500],
        "rates": [1, 10, 50],
        "phase": 5,
        "open_lots": 200,
    },
    "smoke": {"concurrency": [1, 2], "seconds": 1, "watchers": [10], "rates": [5], "phase": 1, "open_lots": 20},
}
OPEN_LOOP_SHARE = 0.7
OPEN_LOOP_BIDDERS = 16
# S2 bids come from this many bidders (two sockets each), so one slow answer does not hold the rest back.
S2_BIDDERS = 4
TARGETS = {"ws_vs_pgbench": 0.5, "rest_vs_pgbench": 0.35, "p99_at_70pct_ms": 30.0, "fanout_p99_vs_baseline": 2.5}
CLIENT_TIMEOUT = 180
_ctx = multiprocessing.get_context("spawn")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Setup --------------------------------------------------------------------


def recreate_database(database_url: str) -> None:
    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    maintenance = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def server_env(args) -> dict[str, str]:
    return {
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "JWT_ACCESS_MINUTES": "240",
        # The per-socket rate limit would otherwise be what S1 measures.
        "WS_MESSAGES_PER_SECOND": "1000000",
        "WS_MESSAGE_BURST": "1000000",
        "AUCTION_CLOCK_IN_PROCESS": "false",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "auction_site.settings",
    }


def manage(env: dict[str, str], *command: str) -> str:
    done = subprocess.run(
        [sys.executable, *command],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


# --- Client processes -----------------------------------------------------------


def run_clients(target, params_list: list[dict], *, timeout: float = CLIENT_TIMEOUT) -> list[dict]:
    """Start one process per params, wait until each is connected, say go, and collect their results."""
    ready, out, go = _ctx.Queue(), _ctx.Queue(), _ctx.Event()
    processes = [_ctx.Process(target=target, args=(p, ready, go, out), daemon=True) for p in params_list]
    try:
        for process in processes:
            process.start()
        for _ in processes:
            kind, detail = ready.get(timeout=timeout)
            if kind == "error":
                raise RuntimeError(f"a client process failed while connecting: {detail}")
        go.set()
        results = []
        for _ in processes:
            kind, detail = out.get(timeout=timeout)
            if kind == "error":
                raise RuntimeError(f"a client process failed: {detail}")
            results.append(detail)
        return results
    finally:
        stop_processes(processes)


def stop_processes(processes) -> None:
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()


def bidding(urls, tokens, *, transport, lot_id, bidders, seconds, t0, rate=None) -> dict:
    """`bidders` bidders (two users each), spread over the servers and up to two client processes."""
    per_process = [[] for _ in range(min(2, bidders))]
    for k in range(bidders):
        per_process[k % len(per_process)].append((urls[k % len(urls)], tokens[2 * k : 2 * k + 2]))
    share = None if rate is None else rate / len(per_process)
    params = [
        {"transport": transport, "lot_id": lot_id, "bidders": b, "duration": seconds, "t0": t0, "rate": share}
        for b in per_process
    ]
    results = run_clients(clients.run_bidders, params)
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r["codes"].items():
            codes[code] = codes.get(code, 0) + n
    latencies = [x for r in results for x in r["latencies_ms"]]
    elapsed = max(r["elapsed"] for r in results)
    accepted = codes.pop("accepted", 0)
    offered = codes.pop("offered", None)
    return {
        "concurrency": bidders,
        "offered_rate": rate,
        "offered": offered,
        "accepted": accepted,
        "rate": accepted / elapsed,
        "rejected": codes,
        **percentiles(latencies),
        "wall_end": max(r["wall_end"] for r in results),
    }


# --- S1: hot lot -------------------------------------------------------------------


def invariants(database_url: str, lot_id: int) -> dict:
    with psycopg.connect(database_url) as conn:
        amounts = [
            row[0]
            for row in conn.execute(
                "SELECT amount FROM bids_bid WHERE lot_id = %s AND NOT raises_max_only ORDER BY id", [lot_id]
            )
        ]
        bid_count, seq = conn.execute("SELECT bid_count, seq FROM lots_lot WHERE id = %s", [lot_id]).fetchone()
        events = conn.execute("SELECT count(*), max(seq) FROM bids_lotevent WHERE lot_id = %s", [lot_id]).fetchone()
    duplicates = len(amounts) - len(set(amounts))
    ordered = all(a <= b for a, b in itertools.pairwise(amounts))
    return {
        "bids": len(amounts),
        "bid_count": bid_count,
        "duplicate_prices": duplicates,
        "non_decreasing": ordered,
        "bid_count_matches": bid_count == len(amounts),
        "events_match_seq": events[0] == seq and (events[1] or 0) == seq,
        "hold": duplicates == 0 and ordered and bid_count == len(amounts) and events[0] == seq,
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
        for c in size["concurrency"]:
            log(f"S1 {transport} closed loop c={c}")
            run = bidding(urls, tokens, transport=transport, lot_id=lot_id, bidders=c, seconds=size["seconds"], t0=t0)
            result[transport].append(run)
        peak = max(r["rate"] for r in result[transport])
        rate = max(1.0, OPEN_LOOP_SHARE * peak)
        log(f"S1 {transport} open loop at {rate:.0f}/s (70 % of {peak:.0f}/s)")
        bidders = min(OPEN_LOOP_BIDDERS, (len(tokens) // 2))
        result["open_loop"][transport] = bidding(
            urls, tokens, transport=transport, lot_id=lot_id, bidders=bidders, seconds=size["seconds"], t0=t0, rate=rate
        )
        result[f"invariants_{transport}"] = invariants(args.database_url, lot_id)
    return result


# --- S2: fan-out -------------------------------------------------------------------


def watch(urls_for_watchers: list[str], origins: list[str]):
    """Start watcher processes (two); return (processes, ready, stop, out) once all are connected."""
    ready, out, go, stop = _ctx.Queue(), _ctx.Queue(), _ctx.Event(), _ctx.Event()
    halves = [list(range(0, len(urls_for_watchers), 2)), list(range(1, len(urls_for_watchers), 2))]
    params = [
        {"urls": [urls_for_watchers[i] for i in h], "origin": [origins[i] for i in h], "max_seconds": 900}
        for h in halves
        if h
    ]
    processes = [_ctx.Process(target=clients.run_watchers, args=(p, ready, go, stop, out), daemon=True) for p in params]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            kind, detail = ready.get(timeout=CLIENT_TIMEOUT)
            if kind == "error":
                raise RuntimeError(f"watchers failed: {detail}")
    except BaseException:
        stop.set()
        stop_processes(processes)
        raise
    return processes, stop, out


def collect(processes, stop, out) -> list[dict]:
    stop.set()
    try:
        results = []
        for _ in processes:
            kind, detail = out.get(timeout=CLIENT_TIMEOUT)
            if kind == "error":
                raise RuntimeError(f"watchers failed: {detail}")
            results.append(detail)
        return results
    finally:
        stop_processes(processes)


def delivery(watchers: list[dict], expected: list[int]) -> dict:
    """Share delivered, order, and latency of the events `expected` (seqs), over every watcher."""
    wanted = set(expected)
    lags: list[float] = []
    delivered = 0
    in_order = True
    sockets = 0
    for result in watchers:
        for seqs, socket_lags in zip(result["seqs"], result["lags_ms"], strict=True):
            sockets += 1
            in_order &= all(a < b for a, b in itertools.pairwise(seqs))
            for seq, lag in zip(seqs, socket_lags, strict=True):
                if seq in wanted:
                    delivered += 1
                    lags.append(lag)
    total = sockets * len(wanted)
    return {
        "events": len(wanted),
        "delivered_share": delivered / total if total else None,
        "in_order": in_order,
        **percentiles(lags),
    }


def scenario_s2(args, size, urls, seed) -> dict:
    lot_id = seed["lots"]["s2"]
    runs = []
    for count in size["watchers"]:
        log(f"S2 app: {count} watchers")
        targets = [clients.ws_url(urls[i % len(urls)], lot_id, None) for i in range(count)]
        origins = [urls[i % len(urls)] for i in range(count)]
        processes, stop, out = watch(targets, origins)
        windows = []
        try:
            for rate in size["rates"]:
                log(f"S2 app: {count} watchers, {rate} bids/s")
                start = time.time()
                bids = bidding(
                    urls,
                    seed["tokens"][-2 * S2_BIDDERS :],
                    transport="ws",
                    lot_id=lot_id,
                    bidders=S2_BIDDERS,
                    seconds=size["phase"],
                    t0=seed["t0"],
                    rate=rate,
                )
                windows.append((rate, start, bids))
                time.sleep(1.5)
        finally:
            watchers = collect(processes, stop, out)
        with psycopg.connect(args.database_url) as conn:
            events = conn.execute(
                "SELECT seq, extract(epoch FROM created_at) FROM bids_lotevent WHERE lot_id = %s AND type = 'NEW_BID'",
                [lot_id],
            ).fetchall()
        for rate, start, bids in windows:
            expected = [seq for seq, at in events if start <= float(at) <= bids["wall_end"] + 1]
            runs.append(
                {
                    "server": "app",
                    "watchers": count,
                    "rate": rate,
                    "bids_offered": bids["offered"],
                    "bids_accepted": bids["accepted"],
                    "bids_rejected": bids["rejected"],
                    **delivery(watchers, expected),
                }
            )

        log(f"S2 baseline: {count} watchers")
        port = free_port()
        commands, answers = _ctx.Queue(), _ctx.Queue()
        from bench.baseline_ws import run_baseline

        server = _ctx.Process(target=run_baseline, args=(port, commands, answers), daemon=True)
        server.start()
        try:
            answers.get(timeout=30)
            base = f"http://127.0.0.1:{port}"
            processes, stop, out = watch([clients.ws_url(base, 1, None)] * count, [base] * count)
            phases = []
            try:
                for rate in size["rates"]:
                    commands.put(("phase", rate, size["phase"]))
                    _, first, last, _connected = answers.get(timeout=size["phase"] + 60)
                    phases.append((rate, first, last))
                    time.sleep(1.5)
            finally:
                watchers = collect(processes, stop, out)
            for rate, first, last in phases:
                runs.append(
                    {
                        "server": "baseline",
                        "watchers": count,
                        "rate": rate,
                        **delivery(watchers, list(range(first, last + 1))),
                    }
                )
        finally:
            commands.put(("stop",))
            stop_processes([server])
    return {"runs": runs}


# --- S4: reads ---------------------------------------------------------------------

READ_PATH = "/api/lots/?status=open"


def scenario_s4(args, size, urls, seed) -> dict:
    """`GET /api/lots/?status=open` with the seeded open lots, closed loop at each concurrency."""
    runs = []
    for c in size["concurrency"]:
        log(f"S4 reads c={c}")
        per_process = [[] for _ in range(min(2, c))]
        for k in range(c):
            per_process[k % len(per_process)].append(urls[k % len(urls)])
        params = [{"bases": bases, "path": READ_PATH, "duration": size["seconds"]} for bases in per_process]
        results = run_clients(clients.run_readers, params)
        codes: dict[str, int] = {}
        for r in results:
            for code, n in r["codes"].items():
                codes[code] = codes.get(code, 0) + n
        ok = codes.pop("200", 0)
        latencies = [x for r in results for x in r["latencies_ms"]]
        elapsed = max(r["elapsed"] for r in results)
        runs.append({"concurrency": c, "rate": ok / elapsed, "errors": codes, **percentiles(latencies)})
    return {"path": READ_PATH, "open_lots": size["open_lots"], "runs": runs}


# --- Server metrics -------------------------------------------------------------

METRICS = ("auction_broadcast_seconds_sum", "auction_broadcast_seconds_count", "process_cpu_seconds_total")


def server_metrics(urls: list[str]) -> dict[str, float]:
    """The servers' own counters (summed over processes): broadcast time and CPU seconds."""
    totals = dict.fromkeys(METRICS, 0.0)
    for url in urls:
        with _direct.open(f"{url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in totals:
                    totals[name] += float(value)
    return totals


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict:
    count = after["auction_broadcast_seconds_count"] - before["auction_broadcast_seconds_count"]
    seconds = after["auction_broadcast_seconds_sum"] - before["auction_broadcast_seconds_sum"]
    return {
        "broadcasts": int(count),
        "broadcast_mean_ms": 1000 * seconds / count if count else None,
        "server_cpu_seconds": after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"],
    }


# --- Verdicts ---------------------------------------------------------------------


def verdicts(results: dict) -> list[dict]:
    out = []
    s1 = results.get("s1")
    if s1 and s1["pgbench"]:
        best = max(s1["pgbench"], key=lambda r: r["rate"])
        for transport, key in (("ws", "ws_vs_pgbench"), ("rest", "rest_vs_pgbench")):
            peak = max(r["rate"] for r in s1[transport])
            ratio = peak / best["rate"]
            out.append(
                {
                    "target": f"S1 {transport.upper()} peak ≥ {TARGETS[key]} x pgbench best ({best['rate']:.0f}/s at c={best['concurrency']})",
                    "measured": f"{peak:.0f}/s = {ratio:.2f} x",
                    "met": ratio >= TARGETS[key],
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
                        f"{inv['duplicate_prices']} duplicate prices, bid_count {inv['bid_count']}",
                        "met": inv["hold"],
                    }
                )
    s2 = results.get("s2")
    if s2:
        base = {(r["watchers"], r["rate"]): r for r in s2["runs"] if r["server"] == "baseline"}
        for run in (r for r in s2["runs"] if r["server"] == "app"):
            b = base.get((run["watchers"], run["rate"]))
            ratio = run["p99_ms"] / b["p99_ms"] if b and b["p99_ms"] and run["p99_ms"] is not None else None
            met = (
                run["delivered_share"] == 1.0
                and run["in_order"]
                and ratio is not None
                and ratio <= TARGETS["fanout_p99_vs_baseline"]
            )
            out.append(
                {
                    "target": f"S2 {run['watchers']} watchers x {run['rate']}/s: 100 % in order, p99 ≤ 2.5 x baseline",
                    "measured": f"{run['delivered_share']:.1%} delivered, in order {run['in_order']}, p99 "
                    f"{run['p99_ms'] if run['p99_ms'] is None else round(run['p99_ms'], 1)} ms vs "
                    f"{b['p99_ms']:.1f} ms = {ratio:.2f} x"
                    if ratio is not None
                    else f"{run['events']} events, no latency to compare",
                    "met": met,
                }
            )
    return out


# --- Entry point -------------------------------------------------------------------


def machine() -> dict:
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    load = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(int(memory) / 1024 / 1024, 1),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="smaller sizes, ~3 minutes")
    group.add_argument("--smoke", action="store_true", help="tiny sizes, < 30 s (the pytest smoke test)")
    parser.add_argument("--processes", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument("--scenarios", default="s1,s2,s4", help="comma-separated: s1, s2, s4")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/auction_bench"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    size = SIZES[mode]
    scenarios = {s.strip() for s in args.scenarios.split(",")}
    started = datetime.now(UTC)
    results: dict = {
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "processes": args.processes,
        "machine": machine(),
        "targets": TARGETS,
    }
    log(f"{mode} run: database {args.database_url}, redis {args.redis_url}, {args.processes} daphne processes")
    recreate_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    env = server_env(args)
    manage(env, "manage.py", "migrate", "--noinput")
    users = 2 * (max(max(size["concurrency"]), OPEN_LOOP_BIDDERS) + S2_BIDDERS)
    seed = json.loads(manage(env, "-m", "bench.seed", str(users), str(size["open_lots"])))
    seed["t0"] = time.time()
    with ExitStack() as stack:
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logs-")))
        servers = stack.enter_context(daphnes(args.processes, env=env, log_dir=log_dir))
        urls = [url for url, _ in servers]
        results["server_pids"] = [pid for _, pid in servers]
        log(f"daphne pids {results['server_pids']} (for py-spy)")
        for name, scenario in (("s1", scenario_s1), ("s2", scenario_s2), ("s4", scenario_s4)):
            if name in scenarios:
                before = server_metrics(urls)
                results[name] = scenario(args, size, urls, seed)
                results[name]["server_metrics"] = metrics_delta(before, server_metrics(urls))
    results["verdicts"] = verdicts(results)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / started.strftime("%Y-%m-%dT%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    markdown = report.markdown(results, plots=[] if args.no_plots else report.plots(results, stem))
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    log(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except queue.Empty:
        log("a client process did not answer in time")
        sys.exit(1)
