"""`make bench`: S1 (hot lot), S2 (fan-out), S3 (idle connections), S4 (reads), each against its baseline, and the clock, in one bounded run.

    python -m bench [--quick | --smoke] [--only s1,s2,s3,s4,clock] [--processes 2] [--database-url URL] [--redis-url URL]

Creates (drops first) its own PostgreSQL database and flushes its own Redis db, migrates,
starts `--processes` daphne processes on PostgreSQL + Redis, drives them from separate
client processes on loopback, and writes `<out>/<date>.json`, `.md` and PNG plots.
Every child process is stopped on the way out, whatever happens."""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench import clients, clock, report
from bench.harness import SIZES, TARGETS, metrics_delta, recreate_database, server_env, server_metrics
from bench.s1_hot_lot import OPEN_LOOP_BIDDERS, scenario_s1
from bench.s2_fanout import S2_BIDDERS, scenario_s2
from bench.s3_idle import scenario_s3
from bench.s4_reads import scenario_s4
from bench.servers import daphnes, log, manage
from bench.verdicts import verdicts


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
