"""What every scenario of `make bench` shares: sizes, targets, the bench database, client processes, bidding, server metrics."""

from __future__ import annotations

import multiprocessing
import secrets
import time
import urllib.error
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from bench import clients
from bench.servers import _direct, free_port
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


CLIENT_TIMEOUT = 180


process_context = multiprocessing.get_context("spawn")


def recreate_database(database_url: str) -> None:
    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    maintenance = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(database_url: str) -> None:
    """Drop the database if it exists, whoever is still connected to it."""
    url = urlsplit(database_url)
    maintenance = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.path.lstrip("/")}" WITH (FORCE)')


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
    ready, out, go = process_context.Queue(), process_context.Queue(), process_context.Event()
    processes = [process_context.Process(target=target, args=(p, ready, go, out), daemon=True) for p in params_list]
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


@contextmanager
def baseline_server():
    """The `websockets` baseline in its own process: yields (base URL, commands, answers, pid); stops it."""
    from bench.baseline_ws import run_baseline

    port = free_port()
    commands, answers = process_context.Queue(), process_context.Queue()
    server = process_context.Process(target=run_baseline, args=(port, commands, answers), daemon=True)
    server.start()
    try:
        answers.get(timeout=30)
        yield f"http://127.0.0.1:{port}", commands, answers, server.pid
    finally:
        commands.put(("stop",))
        stop_processes([server])


DISCONNECT_TIMEOUT = 60


def websockets_open(urls: list[str]) -> int:
    """Sockets the app's processes count as open (`auction_websockets_open`, summed)."""
    total = 0.0
    for url in urls:
        with _direct.open(f"{url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("auction_websockets_open{"):
                    total += float(line.rsplit(" ", 1)[1])
    return int(total)


def app_settled(urls: list[str]):
    """Wait (bounded) until the app's processes count `expected` open sockets; return the last count."""

    def count() -> int | None:
        try:
            return websockets_open(urls)
        except (OSError, urllib.error.URLError):  # Busy with a storm of closes: ask again.
            return None

    def wait(expected: int) -> int | None:
        deadline = time.monotonic() + DISCONNECT_TIMEOUT
        while (last := count()) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        return last

    return wait


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
