"""Wake-ups for the background workers (the clock, the mailer) that need no channel layer.

On PostgreSQL a wake-up is a `NOTIFY` issued in the writer's transaction:
PostgreSQL delivers it to every listening process on commit, and drops it
with a rollback. A worker that was down misses nothing, since it reads the
schedule when it starts. On SQLite (one process) a wake-up is set in the
process after commit.

A `Listener` waits for either, for a timeout, or for its worker to stop,
with one `select()`: a stop never waits on anything else.
"""

from __future__ import annotations

import contextlib
import logging
import select
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
    through a transaction-pooling proxy).
    """
    params = dict(connections[DEFAULT_DB_ALIAS].get_connection_params())
    for key in ("pool", "cursor_factory", "context", "prepare_threshold", "server_side_binding", "isolation_level"):
        params.pop(key, None)
    params["autocommit"] = True
    params.setdefault("connect_timeout", 5)
    return params


class Listener:
    """Waits for wake-ups on `channel`, a timeout, or `interrupt()`.

    `interrupt()` is thread-safe and signal-safe; it makes the current or the
    next `wait()` return at once.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._interrupt_read, self._interrupt_write = socket.socketpair()
        self._interrupt_read.setblocking(False)
        self._interrupt_write.setblocking(False)
        self._pg: psycopg.Connection | None = None
        self._pg_params = _listen_connection_params() if _on_postgresql() else None
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
        """Wait up to `timeout` seconds; True if woken (by a wake-up or an interrupt)."""
        pg = self._listening_connection()
        if self._pg_params is not None and pg is None:
            timeout = min(timeout, RECONNECT_SECONDS)
        if self._just_connected:
            self._just_connected = False
            return True
        sources = [self._interrupt_read] + ([pg] if pg is not None else [])
        try:
            ready, _, _ = select.select(sources, [], [], max(timeout, 0))
        except (OSError, ValueError):
            # The LISTEN connection's socket went away under select().
            self._drop_connection()
            return False
        if self._interrupt_read in ready:
            self._drain_interrupts()
        if pg is not None and pg in ready:
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
        self._interrupt_read.close()
        self._interrupt_write.close()

    def _listening_connection(self) -> psycopg.Connection | None:
        if self._pg_params is None or self._pg is not None or time.monotonic() < self._next_connect:
            return self._pg
        try:
            self._pg = psycopg.connect(**self._pg_params)
            self._pg.execute(f"LISTEN {self.channel}")
            self._just_connected = True
        except psycopg.Error as exc:
            logger.warning(
                "cannot listen for wake-ups on %s (%s); looking every %s s", self.channel, exc, RECONNECT_SECONDS
            )
            self._drop_connection()
            self._next_connect = time.monotonic() + RECONNECT_SECONDS
        return self._pg

    def _drop_connection(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None

    def _drain_interrupts(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._interrupt_read.recv(4096):
                pass
