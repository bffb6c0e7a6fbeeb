"""Clock lateness: how late `manage.py run_clock` processes close lots that all end within one second.

For 1 and for 4 clock processes, on the benchmark's PostgreSQL + Redis, then again while the
clocks' Redis (a private redis-server) is frozen with SIGSTOP across the end time: `lots` lots
end spread over [T, T + 1 s); each run reports p50 / p99 / max of `closed_at - ends_at`, checks
that every lot closed exactly once (one AUCTION_ENDED event) and none before its end, and sums
up the clocks' own logs (rounds, errors).

The lots are bulk-created a few seconds before T (as already warned that they end soon, as a
lot ending at T would have been minutes before), then every way a clock may learn of them is
used: `wake_clocks()` (`NOTIFY auction_clock`), as the services do.

`python -m bench.clock LOTS LEAD_SECONDS` (in the clocks' environment) creates the lots and prints them as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench.servers import PrivateRedis, clocks, log, manage
from bench.stats import percentiles

# lead_seconds: the lots are created this long before the first ends (at least 3 s), so that a clock
# which only re-reads its schedule at its next round still sees them; the freeze starts after that.
SIZES = {
    "full": {"lots": 500, "clocks": [1, 4], "freeze_seconds": 10.0, "lead_seconds": 8.0},
    "quick": {"lots": 200, "clocks": [1, 4], "freeze_seconds": 6.0, "lead_seconds": 6.0},
    "smoke": {"lots": 20, "clocks": [1, 2], "freeze_seconds": 2.0, "lead_seconds": 4.0},
}
TARGET_P99_MS = 250.0
SPREAD_SECONDS = 1.0
# A run gives up waiting this long after the last end (plus the freeze).
CLOSE_TIMEOUT = 90.0
# After the last lot closed, a clock that would close one twice has this long to do it.
SETTLE_SECONDS = 1.0


def scenario(*, database_url: str, env: dict[str, str], mode: str, keep_logs: Path | None = None) -> dict:
    """Every run of the scenario: (normal, frozen Redis) x each clock count; the clocks' logs go to `keep_logs`."""
    size = SIZES[mode]
    env = {**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
    runs = []
    with ExitStack() as stack:
        if keep_logs is None:
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-clock-"))
        else:
            keep_logs.mkdir(parents=True, exist_ok=True)
            log_dir = keep_logs
        for frozen in (False, True):
            for count in size["clocks"]:
                what = f"{count} clock(s), Redis {'frozen ' + str(size['freeze_seconds']) + ' s' if frozen else 'up'}"
                log(f"clock: {size['lots']} lots ending within {SPREAD_SECONDS:g} s, {what}")
                runs.append(
                    one_run(
                        database_url=database_url,
                        env=env,
                        lots=size["lots"],
                        lead_seconds=size["lead_seconds"],
                        count=count,
                        freeze_seconds=size["freeze_seconds"] if frozen else None,
                        log_dir=Path(log_dir),
                    )
                )
                r = runs[-1]
                log(
                    f"clock: p50 {_ms(r['p50_ms'])} / p99 {_ms(r['p99_ms'])} / max {_ms(r['max_ms'])} ms, "
                    f"closed {r['closed']}/{r['lots']}, exactly once {r['exactly_once']}"
                )
    return {
        "lots": size["lots"],
        "spread_seconds": SPREAD_SECONDS,
        "lead_seconds": size["lead_seconds"],
        "target_p99_ms": TARGET_P99_MS,
        "runs": runs,
    }


def one_run(
    *,
    database_url: str,
    env: dict[str, str],
    lots: int,
    lead_seconds: float,
    count: int,
    freeze_seconds: float | None,
    log_dir: Path,
) -> dict:
    name = f"clock-{count}{'-frozen' if freeze_seconds else ''}"
    with ExitStack() as stack:
        redis_server = None
        if freeze_seconds:
            redis_server = PrivateRedis()
            stack.callback(redis_server.close)
            env = {**env, "REDIS_URL": redis_server.url}
        processes = stack.enter_context(clocks(count, env=env, log_dir=log_dir, name=name))
        # Let each join the wake-up channel and fall asleep on its empty schedule.
        time.sleep(1.0)
        created = json.loads(manage(env, "-m", "bench.clock", str(lots), str(lead_seconds)))
        t = created["t"]
        frozen_at = thawed_at = None
        if redis_server is not None:
            # Centred on the ends: half the freeze before T + spread/2, half after.
            _sleep_until(t + SPREAD_SECONDS / 2 - freeze_seconds / 2)
            redis_server.freeze()
            frozen_at = time.time()
            try:
                _sleep_until(frozen_at + freeze_seconds)
            finally:
                redis_server.thaw()
            thawed_at = time.time()
        deadline = t + SPREAD_SECONDS + (freeze_seconds or 0) + CLOSE_TIMEOUT
        while _open_count(database_url, created["ids"]) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(SETTLE_SECONDS)
        outcome = measure(database_url, created["ids"], t)
    # The clocks have stopped: their logs are complete.
    clock_logs = [summarize_log(path, t) for path, _pid in processes]
    return {
        "clocks": count,
        "redis": "frozen" if freeze_seconds else "up",
        "freeze_seconds": freeze_seconds,
        "freeze_from_t_s": None if frozen_at is None else round(frozen_at - t, 3),
        "thaw_from_t_s": None if thawed_at is None else round(thawed_at - t, 3),
        "created_before_t_s": round(t - created["created_at"], 3),
        **outcome,
        "clock_logs": clock_logs,
    }


def _sleep_until(moment: float) -> None:
    time.sleep(max(moment - time.time(), 0))


def _open_count(database_url: str, ids: list[int]) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM lots_lot WHERE id = ANY(%s) AND status = 'open'", [ids]).fetchone()[0]


def measure(database_url: str, ids: list[int], t: float) -> dict:
    """Lateness of every closed lot, and whether each closed exactly once and not early."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT l.status,
                   extract(epoch FROM l.ends_at)::float8,
                   (extract(epoch FROM l.closed_at - l.ends_at) * 1000)::float8,
                   (SELECT count(*) FROM bids_lotevent e WHERE e.lot_id = l.id AND e.type = 'AUCTION_ENDED')
            FROM lots_lot l WHERE l.id = ANY(%s)
            """,
            [ids],
        ).fetchall()
    closed = [(ends, late) for status, ends, late, _ in rows if status == "closed"]
    lateness = [late for _, late in closed]
    events = Counter(n for *_, n in rows)
    early = sum(1 for late in lateness if late < 0)
    # The latest lots: where in the second they were due, and how late.
    latest = sorted(closed, key=lambda c: c[1], reverse=True)[:5]
    return {
        "lots": len(ids),
        "closed": len(closed),
        **percentiles(lateness),
        "over_target": sum(1 for late in lateness if late > TARGET_P99_MS),
        "closed_early": early,
        "ended_events": {str(k): v for k, v in sorted(events.items())},
        "exactly_once": len(rows) == len(ids) == len(closed) and events == Counter({1: len(ids)}) and early == 0,
        "latest": [{"due_after_t_ms": round((ends - t) * 1000, 1), "late_ms": round(late, 1)} for ends, late in latest],
    }


def summarize_log(path: Path, t: float) -> dict:
    """One clock's rounds that closed lots (when, how many) and its errors, from its JSON log lines."""
    from datetime import datetime

    closing_rounds: list[tuple[float, int]] = []
    errors: Counter[str] = Counter()
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        if not line.startswith("{"):
            continue  # The console e-mail backend's messages.
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message", "")
        at = datetime.fromisoformat(entry["time"]).timestamp() - t
        if message.startswith("clock: opened"):
            closed = int(message.split("closed ")[1].split(",")[0])
            if closed:
                closing_rounds.append((at, closed))
        elif entry.get("level") in ("ERROR", "CRITICAL") or "exc" in entry:
            errors[f"{message} @ {at:+.1f} s"[:160]] += 1
    return {
        "log": path.name,
        # A clock that did not log this was killed: it did not stop within 5 s of SIGTERM.
        "stopped_on_sigterm": '"clock stopped"' in text,
        "lots_closed": sum(n for _, n in closing_rounds),
        "closing_rounds": len(closing_rounds),
        "first_close_s": round(closing_rounds[0][0], 3) if closing_rounds else None,
        "last_close_s": round(closing_rounds[-1][0], 3) if closing_rounds else None,
        "errors": dict(errors.most_common(8)),
        "error_count": sum(errors.values()),
    }


def verdicts(clock: dict | None) -> list[dict]:
    if not clock:
        return []
    out = []
    for run in clock["runs"]:
        label = f"{run['clocks']} clock{'s' if run['clocks'] > 1 else ''}, Redis {run['redis']}"
        out.append(
            {
                "target": f"Clock ({label}): {run['lots']} lots ending within {clock['spread_seconds']:g} s, "
                f"p99 of closed_at - ends_at ≤ {clock['target_p99_ms']:.0f} ms",
                "measured": f"p50 {_ms(run['p50_ms'])} / p99 {_ms(run['p99_ms'])} / max {_ms(run['max_ms'])} ms",
                "met": run["p99_ms"] is not None and run["p99_ms"] <= clock["target_p99_ms"],
            }
        )
        out.append(
            {
                "target": f"Clock ({label}): every lot closed exactly once (one AUCTION_ENDED), none before its end",
                "measured": f"{run['closed']}/{run['lots']} closed, AUCTION_ENDED per lot {run['ended_events']}, "
                f"{run['closed_early']} early",
                "met": run["exactly_once"],
            }
        )
    return out


def markdown(clock: dict | None) -> list[str]:
    if not clock:
        return []
    lines = [
        f"### Clock lateness ({clock['lots']} lots ending over [T, T + {clock['spread_seconds']:g} s), created "
        f"{clock['lead_seconds']:g} s before T; `closed_at - ends_at`; target p99 ≤ {clock['target_p99_ms']:.0f} ms "
        "on a quiet machine)",
        "",
        "| clocks | Redis | p50 ms | p99 ms | max ms | over target | closed | AUCTION_ENDED per lot | early "
        "| lots closed per clock | clock errors | clocks killed (no stop on SIGTERM) |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for r in clock["runs"]:
        redis_state = (
            f"frozen {r['freeze_from_t_s']:+.1f} s to {r['thaw_from_t_s']:+.1f} s of T"
            if r["redis"] == "frozen"
            else "up"
        )
        per_clock = ", ".join(str(c["lots_closed"]) for c in r["clock_logs"])
        errors = sum(c["error_count"] for c in r["clock_logs"])
        killed = sum(not c["stopped_on_sigterm"] for c in r["clock_logs"])
        ended = ", ".join(f"{k}: {v}" for k, v in r["ended_events"].items())
        lines.append(
            f"| {r['clocks']} | {redis_state} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['max_ms'])} | "
            f"{r['over_target']} | {r['closed']}/{r['lots']} | {ended} | {r['closed_early']} | {per_clock} | {errors} "
            f"| {killed} |"
        )
    lines.append("")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# --- `python -m bench.clock LOTS`: runs in the clocks' environment ---------------------------------


def create_lots(count: int, lead_seconds: float) -> dict:
    """Bulk-create `count` open lots ending over [T, T + SPREAD_SECONDS), T = now + `lead_seconds`; wake the clocks."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auction_site.settings")
    django.setup()
    from datetime import timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from lots.models import Lot, LotStatus
    from lots.wakeups import wake_clocks

    seller, _ = get_user_model().objects.get_or_create(
        username="bench_clock_seller", defaults={"email": "clock-seller@bench.invalid"}
    )
    now = timezone.now()
    t = now + timedelta(seconds=lead_seconds)
    lots = Lot.objects.bulk_create(
        Lot(
            seller=seller,
            title=f"Clock lot {i}",
            currency="USD",
            starting_price=Decimal("10.00"),
            status=LotStatus.OPEN,
            starts_at=now,
            ends_at=t + timedelta(seconds=SPREAD_SECONDS * i / count),
            hard_ends_at=t + timedelta(hours=1),
            # Warned minutes ago, as a lot ending at T would have been: only the closing is measured.
            ending_soon_sent_at=now,
            lot_number=i,
        )
        for i in range(count)
    )
    # What the services do for a schedule change: NOTIFY auction_clock on PostgreSQL.
    wake_clocks()
    return {"t": t.timestamp(), "created_at": time.time(), "ids": [lot.id for lot in lots]}


if __name__ == "__main__":
    print(json.dumps(create_lots(int(sys.argv[1]), float(sys.argv[2]))))
