"""Real `manage.py serve` processes for tests that need several servers sharing PostgreSQL and Redis.

    with live_servers(2, env={"DATABASE_URL": ..., "REDIS_URL": ...}) as urls:
        ...  # urls == ["http://127.0.0.1:PORT", ...]

Each process is `manage.py serve --no-clock` (daphne with the project's
adaptation, `realtime.server`: frames written straight to the socket) on a
free port; the context manager returns once every /api/health/ answers 200, and always
stops the processes on the way out. An exception raised inside the block
carries the servers' stderr as a note, so a failure shows what they logged.
`live_server_processes` yields the `ServeProcess`es themselves, for tests that read
what the processes wrote (`ServeProcess.output()`: stdout and stderr together).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from testsupport.ports import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MANAGE = [sys.executable, str(PROJECT_ROOT / "manage.py")]
# Starting is what must happen: generous, since two servers start at once on a machine that may be
# at load 12 or more (20 s was missed at load 20). A healthy start returns as soon as it answers.
STARTUP_TIMEOUT = 120
# Seconds for a launched server to listen: it must, however busy the machine (a first `serve_prod`
# also migrates and collects the static files, which took over 90 s at load 20).
LISTEN_TIMEOUT = 300
# Straight to 127.0.0.1, whatever proxy the environment names.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def database_url_for_tests(name: str | None = None) -> str:
    """The database pytest-django created for this run (e.g. `test_postgres`), as a URL for other processes.

    `name`: another database on the same server instead.
    """
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{credentials}@{host}/{quote(name or db['NAME'], safe='')}"


class ServeProcess:
    """One `manage.py serve` on 127.0.0.1:`port` with `options`, its output written to `log`."""

    def __init__(self, port: int, env: dict[str, str], log: Path, *options: str) -> None:
        self.port, self.log = port, log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [*MANAGE, "serve", "--host", "127.0.0.1", "--port", str(port), *options],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_kib(self) -> int:
        """The process's resident memory, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))

    def healthy(self) -> bool:
        try:
            with _direct.open(f"{self.url}/api/health/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_listening(self, timeout: float = LISTEN_TIMEOUT) -> None:
        wait_listening(self.port, self.process, self.log, timeout)

    def stop(self) -> int:
        return stop(self.process)


def wait_listening(port: int, process: subprocess.Popen, log: Path, timeout: float = LISTEN_TIMEOUT) -> None:
    """Until something listens on `port`; fails if `process` exits first (with the tail of its `log`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop(process: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; the exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def request(method: str, url: str, *, token: str | None = None, data: dict | None = None) -> tuple[int, dict]:
    """A JSON request to a live server: (status, decoded body); 4xx and 5xx are returned too."""
    body = None if data is None else json.dumps(data).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _direct.open(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def logs(servers: list[ServeProcess]) -> str:
    return "\n".join(f"--- serve {s.url} (exit code {s.process.poll()}) ---\n{s.output()[-8000:]}" for s in servers)


@contextmanager
def live_servers(count: int, *, env: dict[str, str], access_log: bool = False) -> Iterator[list[str]]:
    """Start `count` `manage.py serve` processes with `env` added to this one's; yield their base URLs.

    `access_log`: each request is logged (scrubbed of credentials) in the process's output.
    """
    with live_server_processes(count, env=env, access_log=access_log) as servers:
        yield [s.url for s in servers]


@contextmanager
def live_server_processes(count: int, *, env: dict[str, str], access_log: bool = False) -> Iterator[list[ServeProcess]]:
    """Like `live_servers`, but yield the `Server`s, whose output the caller may read."""
    process_env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1", **env}
    process_env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py sets the project's own.
    servers: list[ServeProcess] = []
    with ExitStack() as stack:
        try:
            ports: set[int] = set()
            while len(ports) < count:
                ports.add(free_port())
            logs_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-")))
            options = ["--no-clock", *([] if access_log else ["--no-access-log"])]
            servers.extend(
                ServeProcess(port, process_env, logs_dir / f"serve-{port}.log", *options) for port in sorted(ports)
            )
            deadline = time.monotonic() + STARTUP_TIMEOUT
            waiting = list(servers)
            while waiting:
                if any(s.process.poll() is not None for s in waiting):
                    raise AssertionError("a server process exited while starting")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no healthy answer within {STARTUP_TIMEOUT} s")
                waiting = [s for s in waiting if not s.healthy()]
                if waiting:
                    time.sleep(0.1)
            yield servers
        except BaseException as exc:
            exc.add_note(logs(servers))
            raise
        finally:
            for server in servers:
                server.stop()
