"""The run's Markdown tables and PNG plots (latency percentiles against load)."""

from __future__ import annotations

from pathlib import Path

from bench.clock import markdown as clock_markdown


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _mib(kib: list[int]) -> str:
    return f"{sum(kib) / len(kib) / 1024:.0f}"


def _codes(codes: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(codes.items())) or "-"


def markdown(results: dict, *, plots: list[Path]) -> str:
    m = results["machine"]
    lines = [
        f"## Benchmark run {results['started']} ({results['mode']})",
        "",
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB RAM, Python {m['python']}, load average at start "
        f"{m['loadavg_at_start']} (shared machine: numbers are noisy; every target is a ratio to a baseline of the "
        f"same run). {results['processes']} daphne processes on PostgreSQL + Redis, clients on loopback.",
        "",
    ]
    s1 = results.get("s1")
    if s1:
        lines += [
            "### S1 hot lot (closed loop: each bidder sends again on its answer)",
            "",
            "| path | concurrency | accepted/s | p50 ms | p99 ms | rejected |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in s1["pgbench"]:
            lines.append(
                f"| pgbench (SQL only) | {r['concurrency']} | {r['rate']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | - |"
            )
        for transport in ("ws", "rest"):
            for r in s1[transport]:
                lines.append(
                    f"| {transport.upper()} | {r['concurrency']} | {r['rate']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_codes(r['rejected'])} |"
                )
        lines += [
            "",
            "Open loop at 70 % of each path's peak (latency from the scheduled send time):",
            "",
            "| path | offered/s | accepted/s | p50 ms | p99 ms | rejected |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for transport, r in s1["open_loop"].items():
            lines.append(
                f"| {transport.upper()} | {r['offered_rate']:.0f} | {r['rate']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_codes(r['rejected'])} |"
            )
        lines.append("")
    s2 = results.get("s2")
    if s2:
        lines += s2_markdown(s2)
    s3 = results.get("s3")
    if s3:
        lines += [
            f"### S3 idle connections ({s3['per_process']:,} per process asked; app sockets spread over "
            f"{s3['lots']} lots, anonymous watchers; each cycle ramps, idles, closes)",
            "",
            "| server | cycle | open | failed | handshakes/s | RSS before MiB | RSS open MiB | KiB/connection "
            "| idle CPU % | RSS after close MiB | Redis conns before/open/after | Redis keys before/open/after |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for server in ("app", "baseline"):
            for cycle, r in enumerate(s3[server], 1):
                redis_clients, keys = r["redis_clients"], r.get("redis_keys")
                lines.append(
                    f"| {server} | {cycle} | {r['open']:,} | {_codes(r['failed'])} | {r['handshakes_per_s']:.0f} | "
                    f"{_mib(r['rss_before_kib'])} | {_mib(r['rss_open_kib'])} | {_ms(r['kib_per_connection'])} | "
                    f"{100 * r['idle_cpu_share']:.1f} | {_mib(r['rss_after_kib'])} | "
                    + (
                        f"{redis_clients['before']}/{redis_clients['open']}/{redis_clients['after']} | "
                        f"{keys['before']}/{keys['open']}/{keys['after']} |"
                        if server == "app" and keys
                        else "- | - |"
                    )
                )
        lines += [
            "",
            "RSS per server process (several: summed, shown per process), from /proc; KiB/connection = RSS growth "
            "÷ sockets opened; idle CPU = share of one CPU per process while every socket is open and quiet.",
            "",
        ]
    s4 = results.get("s4")
    if s4:
        lines += [
            f"### S4 reads (`GET {s4['path']}`, {s4['open_lots']} open lots besides the benchmark's own, "
            f"{s4.get('bids_per_second', 0)} bids/s on one of them meanwhile; closed loop)",
            "",
            "| server | concurrency | reads/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for server, runs in (("app", s4["runs"]), ("constant response", s4.get("constant", []))):
            lines += [
                f"| {server} | {r['concurrency']} | {r['rate']:.0f} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
                f"{_codes(r['errors'])} |"
                for r in runs
            ]
        if "queries_per_request" in s4:
            lines += ["", f"Queries per listing request: {s4['queries_per_request']}."]
        lines.append("")
    lines += clock_markdown(results.get("clock"))
    rows = [
        (name.upper(), results[name]["server_metrics"])
        for name in ("s1", "s2", "s3", "s4")
        if name in results and "server_metrics" in results[name]
    ]
    if rows:
        lines += [
            "### Server-side counters (from each process's `/metrics`, summed)",
            "",
            "| scenario | broadcasts | mean broadcast ms (`auction_broadcast_seconds`) | server CPU s |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {n} | {m['broadcasts']} | {_ms(m['broadcast_mean_ms'])} | {m['server_cpu_seconds']:.1f} |"
            for n, m in rows
        ]
        lines.append("")
    if results.get("verdicts"):
        lines += ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
        lines += [
            f"| {v['target']} | {v['measured']} | {'yes' if v['met'] else '**no**'} |" for v in results["verdicts"]
        ]
        lines.append("")
    if plots:
        lines += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def s2_markdown(s2: dict) -> list[str]:
    lines = [
        "### S2 fan-out (delivery latency: the event's stamp, bid `created_at` → each watcher receives the frame)",
        "",
        "| server | watchers | bids/s offered | bids offered/accepted | events | delivered | in order | p50 ms "
        "| p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in s2["runs"]:
        if not r.get("finished", True):
            lines.append(
                f"| {r['server']} | {r['watchers']} | {r['rate']} | did not finish: {r['reason']} | | | | | | |"
            )
            continue
        share = "-" if r["delivered_share"] is None else f"{r['delivered_share']:.2%}"
        lines.append(
            f"| {r['server']} | {r['watchers']} | {r['rate']} | {r.get('bids_offered', '-')}/"
            f"{r.get('bids_accepted', r['events'])} | {r['events']} | {share} | {r['in_order']} | "
            f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['max_ms'])} |"
        )
    base = {(r["watchers"], r["rate"]): r for r in s2["runs"] if r["server"] == "baseline"}
    lines += [
        "",
        "Against the bare `websockets` server, same watchers from the same client processes, same run:",
        "",
        "| watchers | bids/s | app p50/p99 ms | bare p50/p99 ms | p99 ratio | delivered | accepted/offered |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in (r for r in s2["runs"] if r["server"] == "app"):
        b = base.get((r["watchers"], r["rate"]))
        app = f"{_ms(r['p50_ms'])}/{_ms(r['p99_ms'])}" if r.get("finished", True) else "did not finish"
        bare = f"{_ms(b['p50_ms'])}/{_ms(b['p99_ms'])}" if b and b.get("finished", True) else "did not finish"
        ratio = (
            f"{r['p99_ms'] / b['p99_ms']:.1f}"
            if r.get("finished", True) and b and b.get("finished", True) and r["p99_ms"] and b["p99_ms"]
            else "-"
        )
        delivered = f"{r['delivered_share']:.2%}" if r.get("finished", True) and r["delivered_share"] else "-"
        accepted = f"{r['accepted_share']:.0%}" if r.get("accepted_share") is not None else "-"
        lines.append(f"| {r['watchers']} | {r['rate']} | {app} | {bare} | {ratio} | {delivered} | {accepted} |")
    lines.append("")
    return lines


def _save(fig, stem: Path, scenario: str) -> Path:
    """Write `fig` next to the results as `<stem>-<scenario>.png` and release it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = stem.with_name(f"{stem.name}-{scenario}.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def plots(results: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    s1 = results.get("s1")
    if s1:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80)
        for name, rows, style in (
            ("pgbench", s1["pgbench"], "k--"),
            ("WebSocket", s1["ws"], "b-"),
            ("REST", s1["rest"], "r-"),
        ):
            if not rows:
                continue
            x = [r["rate"] for r in rows]
            left.plot(x, [r["p50_ms"] for r in rows], style, marker="o", label=f"{name} p50")
            left.plot(x, [r["p99_ms"] for r in rows], style, marker="^", alpha=0.5, label=f"{name} p99")
            right.plot([r["concurrency"] for r in rows], x, style, marker="o", label=name)
        left.set(xlabel="accepted bids/s", ylabel="latency ms", yscale="log", title="S1 latency vs throughput")
        right.set(xlabel="concurrency", ylabel="accepted bids/s", xscale="log", title="S1 throughput")
        left.legend(fontsize=7)
        right.legend(fontsize=7)
        written.append(_save(fig, stem, "s1"))
    s2 = results.get("s2")
    if s2:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=80)
        for (server, watchers), style in _series(s2["runs"]):
            rows = [
                r for r in s2["runs"] if r["server"] == server and r["watchers"] == watchers and r.get("finished", True)
            ]
            ax.plot(
                [r["rate"] for r in rows],
                [r["p99_ms"] for r in rows],
                style,
                marker="^",
                label=f"{server} {watchers} p99",
            )
            ax.plot(
                [r["rate"] for r in rows],
                [r["p50_ms"] for r in rows],
                style,
                marker="o",
                alpha=0.5,
                label=f"{server} {watchers} p50",
            )
        ax.set(
            xlabel="bids/s",
            ylabel="delivery latency ms",
            xscale="log",
            yscale="log",
            title="S2 fan-out latency vs bid rate",
        )
        ax.legend(fontsize=7)
        written.append(_save(fig, stem, "s2"))
    s4 = results.get("s4")
    if s4:
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=80)
        for name, rows, style in (("listing", s4["runs"], "b-"), ("constant response", s4.get("constant", []), "k--")):
            if not rows:
                continue
            x = [r["rate"] for r in rows]
            ax.plot(x, [r["p50_ms"] for r in rows], style, marker="o", label=f"{name} p50")
            ax.plot(x, [r["p99_ms"] for r in rows], style, marker="^", alpha=0.5, label=f"{name} p99")
        ax.axhline(50, color="r", linewidth=0.5)
        ax.set(xlabel="reads/s", ylabel="latency ms", yscale="log", title="S4 reads: latency vs throughput")
        ax.legend(fontsize=7)
        written.append(_save(fig, stem, "s4"))
    return written


def _series(runs):
    colors = ["b", "g", "m", "c"]
    seen = []
    for r in runs:
        key = (r["server"], r["watchers"])
        if key not in seen:
            seen.append(key)
    watcher_counts = sorted({w for _, w in seen})
    return [((s, w), colors[watcher_counts.index(w) % 4] + ("-" if s == "app" else "--")) for s, w in seen]
