"""Start and always stop the processes a benchmark run needs (daphne, the baseline server).

Ideas from `bids/tests/live_servers.py`, kept separate so the tests' launcher can change freely.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 30
STOP_TIMEOUT = 5
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def healthy(url: str) -> bool:
    try:
        with _direct.open(f"{url}/api/health/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def daphnes(count: int, *, env: dict[str, str], log_dir: Path) -> Iterator[list[tuple[str, int]]]:
    """`count` `manage.py serve --no-clock` processes; yields [(url, pid)], stops them on the way out."""
    processes: list[subprocess.Popen] = []
    urls: list[str] = []
    try:
        for _ in range(count):
            port = free_port()
            log = (log_dir / f"daphne-{port}.log").open("w")
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "manage.py",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--no-clock",
                        "--no-access-log",
                    ],
                    cwd=PROJECT_ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        waiting = list(urls)
        while waiting:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a daphne process exited while starting; see {log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no healthy answer within {STARTUP_TIMEOUT} s; see {log_dir}")
            waiting = [u for u in waiting if not healthy(u)]
            if waiting:
                time.sleep(0.2)
        yield [(u, p.pid) for u, p in zip(urls, processes, strict=True)]
    finally:
        for process in processes:
            stop(process)
