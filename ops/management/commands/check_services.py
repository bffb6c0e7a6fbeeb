import socket
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ops.database import database_problem


class Command(BaseCommand):
    help = "Exit 0 when the configured database and Redis (if any) answer; 1 otherwise."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=3.0)

    def handle(self, *args, timeout: float, **options):
        problems = []
        # One plain connection first: the pool would retry for its whole timeout and name no cause.
        database = database_problem()
        if database is not None:
            problems.append(f"database: {database}")
        else:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except Exception as exc:
                problems.append(f"database: {type(exc).__name__}")
        if settings.REDIS_URL:
            url = urlparse(settings.REDIS_URL)
            try:
                with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=timeout) as sock:
                    sock.sendall(b"PING\r\n")
                    if not sock.recv(16).startswith(b"+PONG"):
                        problems.append("redis: no PONG")
            except OSError as exc:
                problems.append(f"redis: {exc}")
        if problems:
            raise CommandError("; ".join(problems))
        self.stdout.write("services ok")
