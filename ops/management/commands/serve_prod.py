"""Production settings on this machine, without Docker: N web processes and one clock.

Each web process is `manage.py serve --no-clock` on its own port (8001,
8002, ...); `manage.py run_clock` runs beside them. All share PostgreSQL and
Redis, so a bid on one process reaches watchers on every other. Ctrl-C (or
SIGTERM) stops every child; so does the death of any one of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_SECONDS = 10


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the launcher dies without stopping it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_environment(host: str) -> dict[str, str]:
    """Production settings over plain HTTP on this machine; anything already set wins."""
    env = dict(os.environ)
    env.setdefault("DEBUG", "false")
    # Every process must sign and check tokens with the same key.
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    env.setdefault("ALLOWED_HOSTS", ",".join(dict.fromkeys([host, "127.0.0.1", "localhost"])))
    env.setdefault("HTTPS", "false")
    env.setdefault("AUCTION_CLOCK_IN_PROCESS", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Command(BaseCommand):
    help = "Run N daphne processes (ports 8001..) and one clock on PostgreSQL + Redis; Ctrl-C stops them all."

    def add_arguments(self, parser):
        parser.add_argument("--processes", type=int, default=int(os.environ.get("WEB_PROCESSES", "2")))
        parser.add_argument("--host", default=os.environ.get("WEB_HOST", "127.0.0.1"))
        parser.add_argument("--base-port", type=int, default=int(os.environ.get("WEB_BASE_PORT", "8001")))
        parser.add_argument("--clocks", type=int, default=1)
        parser.add_argument("--skip-setup", action="store_true", help="Skip `migrate` and `collectstatic`.")

    def handle(self, *args, processes: int, host: str, base_port: int, clocks: int, skip_setup: bool, **options):
        if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.REDIS_URL:
            raise CommandError(
                "serve_prod needs DATABASE_URL=postgres://... and REDIS_URL=redis://... "
                "(processes share rooms only through them)."
            )
        if processes < 1:
            raise CommandError("--processes must be at least 1.")
        env = child_environment(host)
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        if not skip_setup:
            self._create_database_if_missing()
            for step in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
                subprocess.run([*manage, *step], env=env, check=True)  # noqa: S603

        stopping = False

        def request_stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        children: list[tuple[str, subprocess.Popen]] = []
        try:
            for number in range(processes):
                port = base_port + number
                command = [*manage, "serve", "--no-clock", "--host", host, "--port", str(port)]
                children.append((f"web {number + 1} http://{host}:{port}/", self._start(command, env)))
            for number in range(clocks):
                children.append((f"clock {number + 1}", self._start([*manage, "run_clock"], env)))
            for name, process in children:
                self.stdout.write(f"{name} pid {process.pid}")
            self.stdout.write("Ctrl-C stops them all.")
            exit_code = 0
            while not stopping:
                died = [(name, process) for name, process in children if process.poll() is not None]
                if died:
                    for name, process in died:
                        self.stderr.write(f"{name} exited with {process.returncode}: stopping the others")
                    exit_code = 1
                    break
                time.sleep(0.2)
        finally:
            self._stop_all([process for _, process in children])
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if exit_code:
            raise CommandError("a child process died", returncode=exit_code)
        self.stdout.write("stopped")

    def _create_database_if_missing(self) -> None:
        import psycopg
        from psycopg import sql

        db = settings.DATABASES["default"]
        params = {
            "host": db["HOST"] or "127.0.0.1",
            "port": db["PORT"] or 5432,
            "user": db["USER"],
            "password": db["PASSWORD"] or None,
        }
        try:
            psycopg.connect(dbname=db["NAME"], **params).close()
        except psycopg.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise CommandError(f"PostgreSQL does not answer: {exc}") from exc
            with psycopg.connect(dbname="postgres", autocommit=True, **params) as connection:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            self.stdout.write(f"created database {db['NAME']}")

    @staticmethod
    def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)  # noqa: S603

    @staticmethod
    def _stop_all(processes: list[subprocess.Popen]) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
