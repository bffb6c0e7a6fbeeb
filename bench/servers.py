"""Start and always stop the processes a benchmark run needs (daphne, clocks, a private Redis, the baseline server).

Ideas from `testsupport/live_servers.py`, kept separate so the tests' launcher can change freely.
"""

from __future__ import annotations

import os
import shutil
import signal
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


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def manage(env: dict[str, str], *command: str) -> str:
    """Run `python *command` in the project with `env` added; its stdout (its output on failure, raised)."""
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


@contextmanager
def clocks(count: int, *, env: dict[str, str], log_dir: Path, name: str) -> Iterator[list[tuple[Path, int]]]:
    """`count` `manage.py run_clock` processes, logging to `<log_dir>/<name>-<k>.log`; yields [(log, pid)].

    Yields once each has logged "clock started" (LOG_LEVEL INFO); stopped with SIGTERM on the way out.
    """
    processes: list[subprocess.Popen] = []
    logs: list[Path] = []
    try:
        for k in range(count):
            path = log_dir / f"{name}-{k}.log"
            with path.open("w") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "run_clock"],
                        cwd=PROJECT_ROOT,
                        env={**os.environ, **env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            logs.append(path)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all("clock started" in path.read_text(errors="replace") for path in logs):
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a clock process exited while starting; see {log_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"a clock did not start within {STARTUP_TIMEOUT} s; see {log_dir}")
            time.sleep(0.1)
        yield [(path, p.pid) for path, p in zip(logs, processes, strict=True)]
    finally:
        for process in processes:
            stop(process)


class PrivateRedis:
    """A redis-server of the benchmark's own on a free port: SIGSTOP freezes it without touching the shared one."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (needed to freeze Redis)")
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        self.frozen = False
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def close(self) -> None:
        if self.frozen:
            self.thaw()
        self.process.kill()
        self.process.wait(STOP_TIMEOUT)
