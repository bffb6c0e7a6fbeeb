"""S3, idle connections: handshakes, memory and CPU per held socket, and what closing them leaves behind."""

from __future__ import annotations

import time

import redis

from bench import clients
from bench.harness import (
    CLIENT_TIMEOUT,
    DISCONNECT_TIMEOUT,
    app_settled,
    baseline_server,
    gather,
    process_context,
    stop_processes,
)
from bench.servers import cpu_seconds, log, rss_kib

# S3's leak check: a second ramp-and-close may leave at most this much more memory per connection than the first.
LEAK_KIB_PER_CONNECTION = 2.0


# S3: how long the keys the closed sockets counted in Redis may take to go.
KEYS_SETTLE_SECONDS = 10


# Sockets per client process (each under the usual 20,000 open-files hard limit).
S3_SOCKETS_PER_CLIENT = 5000


# The first cycle warms the allocator and the connection pools; a leak shows as growth between the later ones.
S3_CYCLES = 3


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


def idle_cpu_share(pids: list[int], seconds: float) -> float:
    """Mean share of one CPU each process used over `seconds` of doing nothing asked of it."""
    before = [cpu_seconds(p) for p in pids]
    time.sleep(seconds)
    return sum(cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)) / seconds / len(pids)


def hold_cycle(targets: list[str], origins: list[str], *, pids, size, redis_url, settled) -> dict:
    """One S3 cycle: ramp every socket, measure while idle, close them all, measure again."""
    clients_needed = max(1, -(-len(targets) // S3_SOCKETS_PER_CLIENT))
    ready, out, go, release = (
        process_context.Queue(),
        process_context.Queue(),
        process_context.Event(),
        process_context.Event(),
    )
    params = [
        {"urls": targets[k::clients_needed], "origins": origins[k::clients_needed]} for k in range(clients_needed)
    ]
    processes = [
        process_context.Process(target=clients.run_holders, args=(p, ready, go, release, out), daemon=True)
        for p in params
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
            out, processes, timeout=DISCONNECT_TIMEOUT + 10 * CLIENT_TIMEOUT, failing="a client process failed"
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
