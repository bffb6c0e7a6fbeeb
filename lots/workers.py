"""Background workers: a thread that runs a round of work, then sleeps until the next is due or it is woken.

Each worker has its own thread and its own database connection, so a round
of any length holds up no socket: it never runs on the server's event loop
nor on the thread that consumers share for the ORM.
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

from lots.wakeups import Listener

logger = logging.getLogger(__name__)

# After a failed round (the database is away), the next one comes this soon.
RETRY_SECONDS = 1.0


class Worker(threading.Thread):
    """Subclasses name their wake-up `channel` and implement `run_round`."""

    channel: str
    # Woken through PostgreSQL NOTIFY too, or only from this process.
    listens_on_database = True

    def __init__(self, *, name: str) -> None:
        # A daemon: a round stuck in a query never keeps the process from exiting.
        super().__init__(name=name, daemon=True)
        self._stopping = threading.Event()
        self._listener = Listener(self.channel, on_database=self.listens_on_database)
        self._failures = 0

    def run_round(self) -> float:
        """Do what is due; return how many seconds the worker may sleep."""
        raise NotImplementedError

    def run(self) -> None:
        logger.info("%s started", self.name)
        try:
            while not self._stopping.is_set():
                delay = self._round()
                if self._stopping.is_set():
                    break
                self._listener.wait(delay)
        finally:
            connections.close_all()
            self._listener.close()
            logger.info("%s stopped", self.name)

    def stopping(self) -> bool:
        return self._stopping.is_set()

    def wake(self) -> None:
        """Run a round now (thread-safe)."""
        self._listener.interrupt()

    def stop(self) -> None:
        """Ask the worker to stop; it leaves its wait at once, or ends the round it is in."""
        self._stopping.set()
        self._listener.interrupt()

    def _round(self) -> float:
        try:
            delay = self.run_round()
        except Exception:
            # The database is away: one traceback an outage, then try again shortly, never die.
            if self._failures == 0:
                logger.exception("%s round failed; retrying every %s s", self.name, RETRY_SECONDS)
            self._failures += 1
            connections.close_all()
            return RETRY_SECONDS
        if self._failures:
            logger.warning("%s recovered after %d failed rounds", self.name, self._failures)
            self._failures = 0
        return delay
