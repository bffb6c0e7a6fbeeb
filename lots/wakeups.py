"""Wake-ups for the background workers (the clock, the mailer) that need no Redis.

On PostgreSQL a wake-up is a `NOTIFY` issued in the writer's transaction:
PostgreSQL delivers it to every listening process on commit, and drops it
with a rollback. A worker that was down misses nothing, since it reads the
schedule when it starts. On SQLite (one process) a wake-up is set in the
process after commit.

A `Listener` waits for either, for a timeout, or for its worker to stop,
in one poll of both sockets: a stop never waits on anything else.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import defaultdict

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections, transaction

logger = logging.getLogger(__name__)

# The schedule changed: a lot's start or end moved, or a lot was created.
CLOCK_CHANNEL = "auction_clock"
# Notifications are waiting for their e-mail.
MAIL_CHANNEL = "auction_mail"
# While the LISTEN connection is down, a listener looks at the schedule this often.
RECONNECT_SECONDS = 1.0

_local_listeners: dict[str, set[Listener]] = defaultdict(set)
_local_lock = threading.Lock()


def _on_postgresql() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def wake(channel: str) -> None:
    """Wake every worker listening on `channel` once the current transaction commits."""
    if _on_postgresql():
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            # Delivered on commit, dropped on rollback; repeats within one
            # transaction are delivered once.
            cursor.execute(f"NOTIFY {channel}")
    else:
        transaction.on_commit(lambda: wake_in_process(channel))


def wake_clocks() -> None:
    """The schedule changed: every clock reads it again (after the commit)."""
    wake(CLOCK_CHANNEL)


def wake_in_process(channel: str) -> None:
    """Wake this process's listeners on `channel` now (no database involved)."""
    with _local_lock:
        listeners = list(_local_listeners[channel])
    for listener in listeners:
        listener.interrupt()


def _listen_connection_params() -> dict:
    """Connection parameters for a plain psycopg connection to Django's default database.

    LISTEN needs a session of its own: not one from Django's pool (and not
    through a transaction-pooling proxy). TCP keepalives notice a connection
    that died without a reset (a partition, a failover) within a minute.
    """
    params = dict(connections[DEFAULT_DB_ALIAS].get_connection_params())
    for key in ("pool", "cursor_factory", "context", "prepare_threshold", "server_side_binding", "isolation_level"):
        params.pop(key, None)
    params.update(autocommit=True, keepalives=1, keepalives_idle=20, keepalives_interval=10, keepalives_count=3)
    params.setdefault("connect_timeout", 5)
    return params


class Listener:
    """Waits for wake-ups on `channel`, a timeout, or `interrupt()`.

    `interrupt()` is thread-safe and signal-safe; it makes the current or the
    next `wait()` return at once. With `on_database=False` only this process
    wakes it (the mailer: a NOTIFY per stored notification would cost every
    bid a statement; other processes' notifications are found by polling).
    """

    def __init__(self, channel: str, *, on_database: bool = True) -> None:
        self.channel = channel
        self._interrupt_read, self._interrupt_write = socket.socketpair()
        self._interrupt_read.setblocking(False)
        self._interrupt_write.setblocking(False)
        # epoll (not select()): a server with thousands of sockets hands out descriptors past 1024.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._interrupt_read, selectors.EVENT_READ)
        self._pg: psycopg.Connection | None = None
        # Registered by number: a connection the server closed may no longer tell its fileno().
        self._pg_fd: int | None = None
        self._pg_params = _listen_connection_params() if on_database and _on_postgresql() else None
        self._next_connect = 0.0
        # A wake-up sent before LISTEN took effect is lost: the first wait after
        # (re)connecting returns at once, so that the worker looks again.
        self._just_connected = False
        with _local_lock:
            _local_listeners[channel].add(self)

    def interrupt(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._interrupt_write.send(b"\0")

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if woken (by a wake-up, an interrupt or a fresh LISTEN)."""
        pg = self._listening_connection()
        if self._just_connected:
            self._just_connected = False
            return True
        if self._pg_params is not None and pg is None:
            # No LISTEN connection: look at the schedule every second meanwhile.
            timeout = min(timeout, RECONNECT_SECONDS)
        try:
            ready = {key.fileobj for key, _ in self._selector.select(max(timeout, 0))}
        except OSError as exc:
            logger.warning("waiting for wake-ups failed (%s); reconnecting", exc)
            self._drop_connection()
            return False
        if self._interrupt_read in ready:
            self._drain_interrupts()
        if pg is not None and self._pg_fd in ready:
            try:
                list(pg.notifies(timeout=0))
            except psycopg.Error as exc:
                logger.warning("wake-up connection lost (%s); reconnecting", exc)
                self._drop_connection()
        return bool(ready)

    def close(self) -> None:
        with _local_lock:
            _local_listeners[self.channel].discard(self)
        self._drop_connection()
        self._selector.close()
        self._interrupt_read.close()
        self._interrupt_write.close()

    def _listening_connection(self) -> psycopg.Connection | None:
        if self._pg_params is None or self._pg is not None or time.monotonic() < self._next_connect:
            return self._pg
        # However it went, the next attempt waits a second: a connection that keeps failing never spins.
        self._next_connect = time.monotonic() + RECONNECT_SECONDS
        try:
            self._pg = psycopg.connect(**self._pg_params)
            self._pg.execute(f"LISTEN {self.channel}")
            self._pg_fd = self._pg.fileno()
            self._selector.register(self._pg_fd, selectors.EVENT_READ)
            self._just_connected = True
        except (psycopg.Error, OSError, ValueError, KeyError) as exc:
            logger.warning(
                "cannot listen for wake-ups on %s (%s); looking every %s s", self.channel, exc, RECONNECT_SECONDS
            )
            self._drop_connection()
        return self._pg

    def _drop_connection(self) -> None:
        if self._pg_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._pg_fd)
            self._pg_fd = None
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None

    def _drain_interrupts(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._interrupt_read.recv(4096):
                pass
