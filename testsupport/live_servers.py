"""Real `manage.py serve` processes for tests that need several servers sharing PostgreSQL and Redis.

    with live_servers(2, env={"DATABASE_URL": ..., "REDIS_URL": ...}) as urls:
        ...  # urls == ["http://127.0.0.1:PORT", ...]

Each process is `manage.py serve --no-clock` (daphne with the project's
adaptation, `realtime.server`: frames written straight to the socket) on a
free port; the context manager returns once every /api/health/ answers 200, and always
stops the processes on the way out. An exception raised inside the block
carries the servers' stderr as a note, so a failure shows what they logged.
`live_server_processes` yields the `Server`s themselves, for tests that read
what the processes wrote (`Server.output()`: stdout and stderr together).
"""

from __future__ import annotations

import json
import os
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
STOP_TIMEOUT = 5
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


class Server:
    def __init__(self, stack: ExitStack, env: dict[str, str], port: int, *, access_log: bool = False) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        # Closed (and deleted) by the caller's ExitStack, after the process stops.
        self.log = stack.enter_context(tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log"))  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                *MANAGE,
                "serve",
                "--no-clock",
                *([] if access_log else ["--no-access-log"]),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def healthy(self) -> bool:
        try:
            with _direct.open(f"{self.url}/api/health/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


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


def logs(servers: list[Server]) -> str:
    return "\n".join(f"--- serve {s.url} (exit code {s.process.poll()}) ---\n{s.output()[-8000:]}" for s in servers)


@contextmanager
def live_servers(count: int, *, env: dict[str, str], access_log: bool = False) -> Iterator[list[str]]:
    """Start `count` `manage.py serve` processes with `env` added to this one's; yield their base URLs.

    `access_log`: each request is logged (scrubbed of credentials) in the process's output.
    """
    with live_server_processes(count, env=env, access_log=access_log) as servers:
        yield [s.url for s in servers]


@contextmanager
def live_server_processes(count: int, *, env: dict[str, str], access_log: bool = False) -> Iterator[list[Server]]:
    """Like `live_servers`, but yield the `Server`s, whose output the caller may read."""
    process_env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1", **env}
    process_env.pop("DJANGO_SETTINGS_MODULE", None)  # manage.py sets the project's own.
    servers: list[Server] = []
    with ExitStack() as stack:
        try:
            ports: set[int] = set()
            while len(ports) < count:
                ports.add(free_port())
            servers.extend(Server(stack, process_env, port, access_log=access_log) for port in sorted(ports))
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
