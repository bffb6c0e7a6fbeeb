"""S2, fan-out: every bid's event to every watcher, against a bare `websockets` server."""

from __future__ import annotations

import itertools
import queue
import time

import psycopg

from bench import clients
from bench.harness import (
    CLIENT_TIMEOUT,
    DISCONNECT_TIMEOUT,
    app_settled,
    baseline_server,
    bidding,
    gather,
    process_context,
    stop_processes,
)
from bench.servers import log
from bench.stats import percentiles

# S2 bids come from this many bidders (two sockets each), so one slow answer does not hold the rest back.
S2_BIDDERS = 4


# S2 watcher sockets per client process (at least two processes): the clients share the machine's CPUs.
S2_WATCHERS_PER_CLIENT = 2500


# A cell's watchers must connect and settle within BASE + watchers / RATE seconds, or it did not finish.
S2_CONNECT_BASE_SECONDS = 60


S2_MIN_HANDSHAKES_PER_SECOND = 40


def watch(urls_for_watchers: list[str], origins: list[str], *, connect_timeout: float):
    """Start watcher processes; return (processes, stop, out) once every socket is connected and settled.

    S2_WATCHERS_PER_CLIENT sockets per client process at most (two at least), dealt round-robin so that
    each process holds sockets on every server. Raises RuntimeError (or queue.Empty) if they are not
    connected within `connect_timeout`.
    """
    ready, out, go, stop = (
        process_context.Queue(),
        process_context.Queue(),
        process_context.Event(),
        process_context.Event(),
    )
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
    processes = [
        process_context.Process(target=clients.run_watchers, args=(p, ready, go, stop, out), daemon=True)
        for p in params
    ]
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
            log(f"S2 app: {left} sockets still counted open {DISCONNECT_TIMEOUT} s after the watchers closed")
        runs += s2_baseline(size, count)
    return {"runs": runs, "watchers_per_client": S2_WATCHERS_PER_CLIENT}
