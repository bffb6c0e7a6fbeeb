"""`make bench`: S1 (hot lot), S2 (fan-out), S3 (idle connections), S4 (reads), each against its baseline, and the clock, in one bounded run.

    python -m bench [--quick | --smoke] [--only s1,s2,s3,s4,clock] [--processes 2] [--database-url URL] [--redis-url URL]

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
import signal
import sys
import tempfile
import threading
import time
import urllib.error
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from bench import clients, clock, pgbench, report
from bench.servers import _direct, cpu_seconds, daphnes, free_port, log, manage, rss_kib
from bench.stats import percentiles

SIZES = {
    "full": {
        "concurrency": [1, 4, 16, 64],
        "seconds": 10,
        "watchers": [100, 1000, 5000, 10000],
        "rates": [1, 10],
        "phase": 15,
        "open_lots": 200,
        "s3_per_process": 10000,
        "s3_idle": 10,
        "s3_settle": 3,
    },
    "quick": {
        "concurrency": [1, 4, 16],
        "seconds": 4,
        "watchers": [100, 1000],
        "rates": [1, 10],
        "phase": 5,
        "open_lots": 200,
        "s3_per_process": 1000,
        "s3_idle": 3,
        "s3_settle": 1,
    },
    "smoke": {
        "concurrency": [1, 2],
        "seconds": 1,
        "watchers": [10],
        "rates": [5],
        "phase": 1,
        "open_lots": 20,
        "s3_per_process": 40,
        "s3_idle": 1,
        "s3_settle": 0.5,
    },
}
OPEN_LOOP_SHARE = 0.7
OPEN_LOOP_BIDDERS = 16
# S2 bids come from this many bidders (two sockets each), so one slow answer does not hold the rest back.
S2_BIDDERS = 4
# S2 watcher sockets per client process (at least two processes): the clients share the machine's CPUs.
S2_WATCHERS_PER_CLIENT = 2500
# A cell's watchers must connect and settle within BASE + watchers / RATE seconds, or it did not finish.
S2_CONNECT_BASE_SECONDS = 60
S2_MIN_HANDSHAKES_PER_SECOND = 40
TARGETS = {
    # S1 (issue #17): WS at 1 and 4 bidders against pgbench at the same concurrency; REST's peak against
    # pgbench's best; more bidders lower WS's rate by at most 20 %; p99 at 70 % of peak; statements per bid.
    "ws_vs_pgbench": 0.25,
    "rest_vs_pgbench": 0.2,
    "ws_more_bidders_keep": 0.8,
    "p99_at_70pct_ms": 20.0,
    "statements_per_bid": 5,
    # S2 (issue #16): every event to every watcher in order, the bidders' rate sustained, at every size;
    # p99 within 2.5 x the bare server's from 1,000 watchers up; 30 ms at 100 watchers x 10 bids/s.
    "fanout_delivered_share": 1.0,
    "fanout_accepted_share": 0.99,
    "fanout_p99_vs_baseline": 2.5,
    "fanout_ratio_from_watchers": 1000,
    "fanout_100_p99_ms": 30.0,
    "fanout_must_finish_watchers": 10000,
    # S3: handshakes/s against the bare server's (same sockets, same clients); idle cost per process.
    "handshakes_vs_baseline": 0.5,
    "connections_per_process": 10000,
    "idle_cpu_share": 0.02,
    "kib_per_connection": 32.0,
    "reads_vs_constant": 0.7,
    "queries_per_read": 3,
}
# S3's leak check: a second ramp-and-close may leave at most this much more memory per connection than the first.
LEAK_KIB_PER_CONNECTION = 2.0
CLIENT_TIMEOUT = 180
# S3: how long the keys the closed sockets counted in Redis may take to go.
KEYS_SETTLE_SECONDS = 10
_ctx = multiprocessing.get_context("spawn")


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
        # The abuse limits (per socket, per user, per client address) would otherwise be what is measured.
        "WS_MESSAGES_PER_SECOND": "1000000",
        "WS_MESSAGE_BURST": "1000000",
        "BIDS_PER_MINUTE": "0",
        "WS_CONNECTIONS_PER_IP": "0",
        "AUCTION_CLOCK_IN_PROCESS": "false",
        "PYTHONUNBUFFERED": "1",
        # Production settings plus S4's constant-response baseline URL (bench/urls.py).
        "DJANGO_SETTINGS_MODULE": "bench.settings",
    }


# --- Client processes -----------------------------------------------------------


def gather(queue, processes, *, timeout: float, failing: str) -> list:
    """One message per client process from `queue`, in arrival order; a process's error fails the phase."""
    messages = []
    for _ in processes:
        kind, detail = queue.get(timeout=timeout)
        if kind == "error":
            raise RuntimeError(f"{failing}: {detail}")
        messages.append(detail)
    return messages


def run_clients(target, params_list: list[dict], *, timeout: float = CLIENT_TIMEOUT) -> list[dict]:
    """Start one process per params, wait until each is connected, say go, and collect their results."""
    ready, out, go = _ctx.Queue(), _ctx.Queue(), _ctx.Event()
    processes = [_ctx.Process(target=target, args=(p, ready, go, out), daemon=True) for p in params_list]
    try:
        for process in processes:
            process.start()
        gather(ready, processes, timeout=timeout, failing="a client process failed while connecting")
        go.set()
        return gather(out, processes, timeout=timeout, failing="a client process failed")
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
    # Open loop: the client processes' schedules interleave (process k sends k/rate later than process 0);
    # in phase, two processes would send the same amount at the same instant, a collision of the harness's making.
    params = [
        {
            "transport": transport,
            "lot_id": lot_id,
            "bidders": b,
            "duration": seconds,
            "t0": t0,
            "rate": share,
            "offset": 0.0 if rate is None else k / rate,
        }
        for k, b in enumerate(per_process)
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
        # Popped by S1 for its invariants; not kept in the results.
        "accepted_ids": [bid_id for r in results for bid_id in r["accepted_ids"]],
    }


# --- S1: hot lot -------------------------------------------------------------------


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


# --- S2: fan-out -------------------------------------------------------------------


def watch(urls_for_watchers: list[str], origins: list[str], *, connect_timeout: float):
    """Start watcher processes; return (processes, stop, out) once every socket is connected and settled.

    S2_WATCHERS_PER_CLIENT sockets per client process at most (two at least), dealt round-robin so that
    each process holds sockets on every server. Raises RuntimeError (or queue.Empty) if they are not
    connected within `connect_timeout`.
    """
    ready, out, go, stop = _ctx.Queue(), _ctx.Queue(), _ctx.Event(), _ctx.Event()
    n = max(2, -(-len(urls_for_watchers) // S2_WATCHERS_PER_CLIENT))
    shares = [list(range(k, len(urls_for_watchers), n)) for k in range(n)]
    params = [
        {
            "urls": [urls_for_watchers[i] for i in share],
            "origin": [origins[i] for i in share],
            "max_seconds": 900,
            "connect_timeout": connect_timeout,
        }
        for share in shares
        if share
    ]
    processes = [_ctx.Process(target=clients.run_watchers, args=(p, ready, go, stop, out), daemon=True) for p in params]
    for process in processes:
        process.start()
    try:
        gather(ready, processes, timeout=connect_timeout + 60, failing="watchers failed")
    except BaseException:
        stop.set()
        stop_processes(processes)
        raise
    return processes, stop, out


def collect(processes, stop, out) -> list[dict]:
    stop.set()
    try:
        return gather(out, processes, timeout=CLIENT_TIMEOUT, failing="watchers failed")
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


def s2_connect_timeout(watchers: int) -> float:
    """How long a cell's watchers may take to connect and settle before the cell is reported as not finished."""
    return S2_CONNECT_BASE_SECONDS + watchers / S2_MIN_HANDSHAKES_PER_SECOND


def not_finished(server: str, watchers: int, rates: list[int], reason: str) -> list[dict]:
    log(f"S2 {server}: {watchers} watchers did not finish: {reason}")
    return [
        {"server": server, "watchers": watchers, "rate": rate, "finished": False, "reason": reason[:300]}
        for rate in rates
    ]


def s2_app(args, size, urls, seed, count: int) -> list[dict]:
    """`count` watchers of the S2 lot over every server; one phase of bids per rate; the cells' rows."""
    lot_id = seed["lots"]["s2"]
    log(f"S2 app: {count} watchers")
    targets = [clients.ws_url(urls[i % len(urls)], lot_id, None) for i in range(count)]
    origins = [urls[i % len(urls)] for i in range(count)]
    windows = []
    stopped = None
    try:
        processes, stop, out = watch(targets, origins, connect_timeout=s2_connect_timeout(count))
        try:
            for rate in size["rates"]:
                log(f"S2 app: {count} watchers, {rate} bids/s")
                start = time.time()
                try:
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
                except (RuntimeError, queue.Empty, TimeoutError) as exc:
                    stopped = _reason(exc)
                    break
                windows.append((rate, start, bids))
                time.sleep(1.5)
        finally:
            watchers = collect(processes, stop, out)
    except (RuntimeError, queue.Empty, TimeoutError) as exc:
        return not_finished("app", count, size["rates"], _reason(exc))
    with psycopg.connect(args.database_url) as conn:
        events = conn.execute(
            "SELECT seq, extract(epoch FROM created_at) FROM bids_lotevent WHERE lot_id = %s AND type = 'NEW_BID'",
            [lot_id],
        ).fetchall()
    runs = []
    for rate, start, bids in windows:
        expected = [seq for seq, at in events if start <= float(at) <= bids["wall_end"] + 1]
        runs.append(
            {
                "server": "app",
                "watchers": count,
                "rate": rate,
                "finished": True,
                "bids_offered": bids["offered"],
                "bids_accepted": bids["accepted"],
                "bids_rejected": bids["rejected"],
                "accepted_share": bids["accepted"] / bids["offered"] if bids["offered"] else None,
                **delivery(watchers, expected),
            }
        )
    if stopped:
        runs += not_finished("app", count, size["rates"][len(windows) :], stopped)
    return runs


def s2_baseline(size, count: int) -> list[dict]:
    """The same watchers, from the same client code, on the bare `websockets` server; one phase per rate."""
    log(f"S2 baseline: {count} watchers")
    phases = []
    stopped = None
    try:
        with baseline_server() as (base, commands, answers, _pid):
            processes, stop, out = watch(
                [clients.ws_url(base, 1, None)] * count, [base] * count, connect_timeout=s2_connect_timeout(count)
            )
            try:
                for rate in size["rates"]:
                    log(f"S2 baseline: {count} watchers, {rate} bids/s")
                    commands.put(("phase", rate, size["phase"]))
                    try:
                        _, first, last, _connected = answers.get(timeout=size["phase"] + 60)
                    except queue.Empty:
                        stopped = f"the bare server did not finish its phase within {size['phase'] + 60} s"
                        break
                    phases.append((rate, first, last))
                    time.sleep(1.5)
            finally:
                watchers = collect(processes, stop, out)
    except (RuntimeError, queue.Empty, TimeoutError) as exc:
        return not_finished("baseline", count, size["rates"], _reason(exc))
    runs = [
        {
            "server": "baseline",
            "watchers": count,
            "rate": rate,
            "finished": True,
            "bids_offered": last - first + 1,
            "bids_accepted": last - first + 1,
            "accepted_share": 1.0,
            **delivery(watchers, list(range(first, last + 1))),
        }
        for rate, first, last in phases
    ]
    if stopped:
        runs += not_finished("baseline", count, size["rates"][len(phases) :], stopped)
    return runs


def _reason(exc: BaseException) -> str:
    return "a client process did not answer in time" if isinstance(exc, queue.Empty) else str(exc)


def scenario_s2(args, size, urls, seed) -> dict:
    """Each watcher count on the app, then on the bare server; a cell that cannot finish in time is reported so."""
    runs = []
    for count in size["watchers"]:
        runs += s2_app(args, size, urls, seed, count)
        # Whatever happened, let the servers drop every socket before the next size (bounded).
        left = app_settled(urls)(0)
        if left:
            log(f"S2 app: {left} sockets still counted open {S3_DISCONNECT_TIMEOUT} s after the watchers closed")
        runs += s2_baseline(size, count)
    return {"runs": runs, "watchers_per_client": S2_WATCHERS_PER_CLIENT}


@contextmanager
def baseline_server():
    """The `websockets` baseline in its own process: yields (base URL, commands, answers, pid); stops it."""
    from bench.baseline_ws import run_baseline

    port = free_port()
    commands, answers = _ctx.Queue(), _ctx.Queue()
    server = _ctx.Process(target=run_baseline, args=(port, commands, answers), daemon=True)
    server.start()
    try:
        answers.get(timeout=30)
        yield f"http://127.0.0.1:{port}", commands, answers, server.pid
    finally:
        commands.put(("stop",))
        stop_processes([server])


# --- S3: idle connections ----------------------------------------------------------

# Sockets per client process (each under the usual 20,000 open-files hard limit).
S3_SOCKETS_PER_CLIENT = 5000
# The first cycle warms the allocator and the connection pools; a leak shows as growth between the later ones.
S3_CYCLES = 3
S3_DISCONNECT_TIMEOUT = 60
# The bare server is one process: it takes as many sockets as the app's processes together, up to its
# open-files limit less this many (its own files, the listening socket).
S3_BASELINE_FD_MARGIN = 256


def redis_clients(redis_url: str) -> int:
    """Connections to the benchmark's Redis db (other sessions use other dbs), not counting this one."""
    conn = redis.Redis.from_url(redis_url)
    try:
        own, db = conn.client_id(), conn.connection_pool.connection_kwargs.get("db", 0)
        return sum(1 for c in conn.client_list() if int(c["db"]) == db and int(c["id"]) != own)
    finally:
        conn.close()


def redis_keys(redis_url: str) -> int:
    """Keys in the benchmark's Redis db (presence, groups...): what the sockets leave behind shows here."""
    conn = redis.Redis.from_url(redis_url)
    try:
        return conn.dbsize()
    finally:
        conn.close()


def websockets_open(urls: list[str]) -> int:
    """Sockets the app's processes count as open (`auction_websockets_open`, summed)."""
    total = 0.0
    for url in urls:
        with _direct.open(f"{url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("auction_websockets_open{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


def idle_cpu_share(pids: list[int], seconds: float) -> float:
    """Mean share of one CPU each process used over `seconds` of doing nothing asked of it."""
    before = [cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    return sum(cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)) / seconds / len(pids)


def hold_cycle(targets: list[str], origins: list[str], *, pids, size, redis_url, settled) -> dict:
    """One S3 cycle: ramp every socket, measure while idle, close them all, measure again."""
    clients_needed = max(1, -(-len(targets) // S3_SOCKETS_PER_CLIENT))
    ready, out, go, release = _ctx.Queue(), _ctx.Queue(), _ctx.Event(), _ctx.Event()
    params = [
        {"urls": targets[k::clients_needed], "origins": origins[k::clients_needed]} for k in range(clients_needed)
    ]
    processes = [
        _ctx.Process(target=clients.run_holders, args=(p, ready, go, release, out), daemon=True) for p in params
    ]
    try:
        for process in processes:
            process.start()
        gather(ready, processes, timeout=CLIENT_TIMEOUT, failing="a client process failed to start")
        rss_before = [rss_kib(p) for p in pids]
        redis_before = redis_clients(redis_url)
        keys_before = redis_keys(redis_url)
        go.set()
        ramps = gather(
            out, processes, timeout=S3_DISCONNECT_TIMEOUT + 10 * CLIENT_TIMEOUT, failing="a client process failed"
        )
        opened = sum(r["open"] for r in ramps)
        ramp_seconds = max(r["seconds"] for r in ramps)
        time.sleep(size["s3_settle"])
        server_open = settled(opened)
        rss_open = [rss_kib(p) for p in pids]
        redis_open = redis_clients(redis_url)
        keys_open = redis_keys(redis_url)
        idle = idle_cpu_share(pids, size["s3_idle"])
        release.set()
        gather(out, processes, timeout=CLIENT_TIMEOUT, failing="a client process failed while closing")
        server_after = settled(0)
        time.sleep(size["s3_settle"])
        rss_after = [rss_kib(p) for p in pids]
        redis_after = redis_clients(redis_url)
        # A process writes its watcher counts at most once a second: what the closed sockets
        # counted leaves Redis within a few seconds, not at once.
        deadline = time.monotonic() + KEYS_SETTLE_SECONDS
        while (keys_after := redis_keys(redis_url)) > keys_before and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        release.set()
        stop_processes(processes)
    failed: dict[str, int] = {}
    for r in ramps:
        for kind, n in r["failed"].items():
            failed[kind] = failed.get(kind, 0) + n
    growth = sum(o - b for o, b in zip(rss_open, rss_before, strict=True))
    return {
        "requested": len(targets),
        "open": opened,
        "server_open": server_open,
        "server_open_after_close": server_after,
        "failed": failed,
        "ramp_seconds": ramp_seconds,
        "handshakes_per_s": opened / ramp_seconds if ramp_seconds else None,
        "rss_before_kib": rss_before,
        "rss_open_kib": rss_open,
        "rss_after_kib": rss_after,
        "kib_per_connection": growth / opened if opened else None,
        "idle_cpu_share": idle,
        "redis_clients": {"before": redis_before, "open": redis_open, "after": redis_after},
        "redis_keys": {"before": keys_before, "open": keys_open, "after": keys_after},
    }


def app_settled(urls: list[str]):
    """Wait (bounded) until the app's processes count `expected` open sockets; return the last count."""

    def count() -> int | None:
        try:
            return websockets_open(urls)
        except (OSError, urllib.error.URLError):  # Busy with a storm of closes: ask again.
            return None

    def wait(expected: int) -> int | None:
        deadline = time.monotonic() + S3_DISCONNECT_TIMEOUT
        while (last := count()) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        return last

    return wait


def scenario_s3(args, size, urls, seed, pids) -> dict:
    """Ramp `s3_per_process` idle watchers per process, spread over the open lots; the same sockets on the baseline.

    The bare server (one process) gets as many sockets as the app's processes together (up to its
    open-files limit), from the same client processes, so that the handshake rates compare the two
    servers and not two loads.
    """
    per_process = size["s3_per_process"]
    lots = seed["open_lots"]
    count = per_process * len(urls)
    targets = [clients.ws_url(urls[i % len(urls)], lots[i % len(lots)], None) for i in range(count)]
    origins = [urls[i % len(urls)] for i in range(count)]
    result: dict = {"per_process": per_process, "processes": len(urls), "lots": len(lots), "app": [], "baseline": []}
    for cycle in range(S3_CYCLES):
        log(f"S3 app: cycle {cycle + 1}, {count} idle sockets over {len(urls)} processes")
        result["app"].append(
            hold_cycle(targets, origins, pids=pids, size=size, redis_url=args.redis_url, settled=app_settled(urls))
        )
    base_count = min(count, clients.raise_open_files_limit() - S3_BASELINE_FD_MARGIN)
    with baseline_server() as (base, _commands, _answers, pid):
        for cycle in range(S3_CYCLES):
            log(f"S3 baseline: cycle {cycle + 1}, {base_count} idle sockets")
            result["baseline"].append(
                hold_cycle(
                    [clients.ws_url(base, 1, None)] * base_count,
                    [base] * base_count,
                    pids=[pid],
                    size=size,
                    redis_url=args.redis_url,
                    settled=lambda expected: None,
                )
            )
    return result


# --- S4: reads ---------------------------------------------------------------------

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
    group.add_argument("--quick", action="store_true", help="smaller sizes, under 5 minutes")
    group.add_argument("--smoke", action="store_true", help="tiny sizes, about 1 minute (the pytest smoke test)")
    parser.add_argument("--processes", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument(
        "--only",
        "--scenarios",
        dest="scenarios",
        default="s1,s2,s3,s4,clock",
        help="comma-separated: s1, s2, s3, s4, clock",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/auction_bench"),
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--clock-logs", type=Path, help="keep the clock processes' logs there (default: discarded)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # `kill` stops the run through the same cleanup as an error: every child process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
    # Inherited by the servers and every client process: S3 holds thousands of sockets each.
    results["open_files_limit"] = clients.raise_open_files_limit()
    log(f"{mode} run: database {args.database_url}, redis {args.redis_url}, {args.processes} daphne processes")
    recreate_database(args.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    env = server_env(args)
    manage(env, "manage.py", "migrate", "--noinput")
    served = [name for name in ("s1", "s2", "s3", "s4") if name in scenarios]
    if served:
        users = 2 * (max(max(size["concurrency"]), OPEN_LOOP_BIDDERS) + S2_BIDDERS)
        seed = json.loads(manage(env, "-m", "bench.seed", str(users), str(size["open_lots"])))
        seed["t0"] = time.time()
        with ExitStack() as stack:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-logs-")))
            servers = stack.enter_context(daphnes(args.processes, env=env, log_dir=log_dir))
            urls = [url for url, _ in servers]
            results["server_pids"] = [pid for _, pid in servers]
            log(f"daphne pids {results['server_pids']} (for py-spy)")
            pids = results["server_pids"]
            for name, scenario in (
                ("s1", scenario_s1),
                ("s2", scenario_s2),
                ("s3", lambda *a: scenario_s3(*a, pids)),
                ("s4", scenario_s4),
            ):
                if name in scenarios:
                    before = server_metrics(urls)
                    results[name] = scenario(args, size, urls, seed)
                    results[name]["server_metrics"] = metrics_delta(before, server_metrics(urls))
    if "clock" in scenarios:
        # After the daphne processes have stopped: the clocks have the machine to themselves.
        results["clock"] = clock.scenario(database_url=args.database_url, env=env, mode=mode, keep_logs=args.clock_logs)
    results["verdicts"] = verdicts(results)
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / started.strftime("%Y-%m-%dT%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    plots = []
    if not args.no_plots:
        try:
            plots = report.plots(results, stem)
        except ImportError as exc:  # matplotlib comes with `make bench` (bench/requirements.txt), not the venv.
            log(f"no plots: {exc}")
    markdown = report.markdown(results, plots=plots)
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
