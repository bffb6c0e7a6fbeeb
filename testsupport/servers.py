"""Helpers for tests that run the server as other processes: ports, environments, HTTP, logs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from websockets.sync.client import connect

from testsupport.live_servers import LISTEN_TIMEOUT, MANAGE, ServeProcess, database_url_for_tests, stop, wait_listening
from testsupport.ports import free_ports

BASE_DIR = Path(settings.BASE_DIR)
# Straight to 127.0.0.1, whatever proxy the environment names.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ws_connect(url: str, *, origin: str, **options):
    """A WebSocket client straight to the server (never through an environment proxy)."""
    options.setdefault("open_timeout", 10)
    return connect(url, origin=origin, proxy=None, **options)


def production_env(**overrides: str) -> dict[str, str]:
    """Production settings (DEBUG off, JSON logs) over plain HTTP on loopback."""
    env = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(48)[:50],
        ALLOWED_HOSTS="127.0.0.1,localhost",
        HTTPS="false",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # Every test registers and logs in from 127.0.0.1.
        THROTTLE_AUTH="1000/minute",
        THROTTLE_LOGIN_ACCOUNT="1000/minute",
    )
    env.update(overrides)
    return env


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(
    method: str, url: str, *, json_body: object = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> Reply:
    """One request; an error status is returned, never raised."""
    data = None if json_body is None else json.dumps(json_body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _direct.open(request, timeout=timeout) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def register_and_log_in(base_url: str, username: str, password: str = "correct-horse-battery-staple") -> str:
    """Register through the public API and return an access token."""
    reply = http(
        "POST",
        f"{base_url}/api/auth/register/",
        json_body={
            "username": username,
            "email": f"{username}@example.com",
            "password": password,
            "password_confirm": password,
            "first_name": username.title(),
            "last_name": "Tester",
        },
    )
    assert reply.status == 201, reply.body
    reply = http("POST", f"{base_url}/api/auth/token/", json_body={"username": username, "password": password})
    assert reply.status == 200, reply.body
    return reply.json()["access"]


def json_lines(text: str) -> list[dict]:
    """Every line of `text` that is a JSON object, parsed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def metric_value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """A sample's value from the Prometheus text format, or None if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and (labels is None or all(sample.labels.get(k) == v for k, v in labels.items())):
                return sample.value
    return None


# --- `manage.py serve_prod` stacks (PostgreSQL + Redis) -------------------------------------------

CHILD_LINE = re.compile(r"^(web \d+ http://\S+|clock \d+) pid (\d+)$", re.MULTILINE)
_setup_done = False


class Stack:
    """A running `manage.py serve_prod`: two web processes and a clock."""

    def __init__(self, launcher: subprocess.Popen, log: Path, base_port: int) -> None:
        self.launcher = launcher
        self.log = log
        self.ports = (base_port, base_port + 1)
        self.urls = tuple(f"http://127.0.0.1:{port}" for port in self.ports)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in CHILD_LINE.findall(self.output())}

    def metrics(self, number: int) -> str:
        reply = http("GET", f"{self.urls[number]}/metrics")
        assert reply.status == 200, reply.body
        return reply.body.decode()

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.launcher.poll() is None, f"the launcher exited:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"{text!r} never appeared:\n{self.output()[-4000:]}"
            time.sleep(0.05)


@contextlib.contextmanager
def serve_prod(tmp_path: Path, static_root: Path, **env: str):
    """`manage.py serve_prod` (what `make serve-prod` runs) on the test database; stopped on exit.

    The first stack of a session runs its setup (migrate, collectstatic); later ones skip it.
    """
    global _setup_done
    base_port = free_ports(2)
    environment = production_env(
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        STATIC_ROOT=str(static_root),
        MEDIA_ROOT=str(tmp_path / "media"),
        WEB_PROCESSES="2",
    )
    environment.update(env)
    log = tmp_path / "serve_prod.log"
    command = [*MANAGE, "serve_prod", "--base-port", str(base_port), *(["--skip-setup"] if _setup_done else [])]
    with log.open("w") as output:
        launcher = subprocess.Popen(command, env=environment, cwd=BASE_DIR, stdout=output, stderr=subprocess.STDOUT)
    stack = Stack(launcher, log, base_port)
    try:
        for port in stack.ports:
            wait_listening(port, launcher, log)
        stack.wait_for_output("clock started", timeout=LISTEN_TIMEOUT)
        _setup_done = True
        yield stack
    except BaseException:
        print(stack.output()[-6000:])
        raise
    finally:
        stop(launcher, timeout=20)


def next_frame(ws, frame_type: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if frame["type"] == frame_type:
            return frame


class TokenRefused(AssertionError):
    """The API answered 401: the request's token was refused (or expired on the way)."""


def create_lot(base_url: str, token: str, *, ends_in: timedelta) -> int:
    """A lot of the token's user, open now; raises `TokenRefused` on a 401."""
    reply = http(
        "POST",
        f"{base_url}/api/lots/",
        json_body={
            "title": "Ship in a bottle",
            "starting_price": "20.00",
            "ends_at": (datetime.now(UTC) + ends_in).isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    if reply.status == 401:
        raise TokenRefused(reply.body)
    assert reply.status == 201, reply.body
    return reply.json()["id"]


def wait_until(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


class TcpProxy:
    """A loopback TCP relay that a test can cut (refuse and reset everything) and restore: an outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_ports(1)
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self.listener is not None:
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # Wakes the blocked accept().
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets = []

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


# --- Private servers that fault tests stop, kill and restart ------------------------------------

UNDER_CI = os.environ.get("CI", "").lower() == "true"


def _missing(what: str) -> None:
    """Skip (fail under CI, where every services test must run) when a server binary is absent."""
    import pytest

    if UNDER_CI:
        pytest.fail(f"{what} is not installed")
    pytest.skip(f"{what} is not installed")


class PrivateRedis:
    """A redis-server of the test's own, on its own port, killed and restarted at will."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server")
        self.binary = binary
        self.port = free_ports(1)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_listening(self.port, self.process, BASE_DIR / "README.md", timeout=60)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (trust auth, socket in its directory), stopped and started at will.

    initdb refuses to run as root, so as root the cluster belongs to `postgres`.
    """

    def __init__(self, directory: Path) -> None:
        bin_dir = POSTGRES_BIN if (POSTGRES_BIN / "initdb").exists() else None
        if bin_dir is None and shutil.which("initdb"):
            bin_dir = Path(shutil.which("initdb")).parent
        if bin_dir is None:
            _missing("PostgreSQL's initdb")
        self.bin = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.port = free_ports(1)
        self.as_owner: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        directory.mkdir(parents=True, exist_ok=True)
        if self.as_owner:
            shutil.chown(directory, "postgres")
            directory.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", str(self.directory), "-p", str(self.port), "-U", "postgres", name)


# --- Independent `manage.py serve` processes: one can be killed without taking the others ------


@contextlib.contextmanager
def serve_web(tmp_path: Path, static_root: Path, count: int, **env: str):
    """`count` separate `manage.py serve --no-clock` processes (production settings) on the test database."""
    environment = production_env(
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        STATIC_ROOT=str(static_root),
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    environment.update(env)
    base_port = free_ports(count)
    web: list[ServeProcess] = []
    try:
        for number in range(count):
            port = base_port + number
            web.append(ServeProcess(port, environment, tmp_path / f"web-{port}.log", "--no-clock"))
        for one in web:
            one.wait_listening()
        yield web
    except BaseException:
        for one in web:
            print(f"--- web {one.port} (exit code {one.process.poll()}) ---\n{one.output()[-4000:]}")
        raise
    finally:
        for one in web:
            one.stop()


def clear_of_window_end(window: int = 60, margin: float = 10) -> None:
    """Sleep into the next fixed window when fewer than `margin` seconds remain of this one.

    For server processes, which count on the real clock; in this process the
    root conftest's `rate_window` pins the clock inside one window.
    """
    left = window - time.time() % window
    if left < margin:
        time.sleep(left + 0.05)
