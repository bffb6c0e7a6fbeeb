"""The auction clock: opens and closes lots on time, and warns watchers before the end.

The clock is a thread of its own with its own database connection (a
`Worker`): a round of any length holds up no socket. It sleeps until the next
due time, or until a schedule change wakes it (PostgreSQL `NOTIFY`, issued in
the changing transaction; in-process on SQLite): it never waits on
Redis. Its broadcasts are handed to a `LoopPublisher` on an event
loop, so a frozen Redis holds back no close.

Each step claims due lots with SKIP LOCKED (one at a time, or a batch when
closing), so any number of clocks may run side by side and every lot opens
and closes exactly once. On start it catches up with whatever fell due while
no clock ran. E-mail is the mailer's (`lots.mailer`), never the clock's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from lots import selectors, services
from lots.events import LoopPublisher, broadcasts_posted_to
from lots.mailer import MailWorker
from lots.wakeups import CLOCK_CHANNEL
from lots.workers import Worker

logger = logging.getLogger(__name__)

MIN_SLEEP_SECONDS = 0.01


@dataclass
class Tick:
    opened: int = 0
    closed: int = 0
    warned: int = 0


def run_due_work(*, now: datetime | None = None) -> Tick:
    """Do everything that is due now (or at `now`, which tests pass).

    Without `now`, each step reads the time afresh: a round with many lots
    takes a while, and a lot must be stamped with the moment it really closed
    (never before a bid it accepted) and never be warned that it ends soon
    once it has ended.
    """
    tick = Tick()
    while services.open_next_due_lot(now=now or timezone.now()):
        tick.opened += 1
    while closed := services.close_due_lots(now=now):
        tick.closed += len(closed)
    while services.announce_next_ending_soon(now=now or timezone.now()):
        tick.warned += 1
    return tick


def seconds_until_next_due(*, now: datetime | None = None) -> float:
    now = now or timezone.now()
    due = selectors.next_due_at()
    limit = settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS
    if due is None:
        return limit
    return min(max((due - now).total_seconds(), MIN_SLEEP_SECONDS), limit)


class ClockWorker(Worker):
    """One clock: rounds of `run_due_work`, sleeping until the next due time or a schedule change."""

    channel = CLOCK_CHANNEL

    def __init__(self, *, publisher: LoopPublisher, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(name="clock")
        self.publisher = publisher
        # Tests drive time: with `now`, every round runs at the time it returns.
        self.now = now

    def run_round(self) -> float:
        with broadcasts_posted_to(self.publisher):
            tick = run_due_work(now=self.now() if self.now else None)
        if tick.opened or tick.closed or tick.warned:
            logger.info("clock: opened %d, closed %d, warned %d", tick.opened, tick.closed, tick.warned)
        return seconds_until_next_due(now=self.now() if self.now else None)


class Clock:
    """The clock and the mailer, each in its thread, broadcasting through `publisher`'s event loop.

    `start()` from anywhere; `stop()` is thread-safe and signal-safe and
    returns at once; `join()` waits for both threads.
    """

    def __init__(
        self, *, publisher: LoopPublisher, now: Callable[[], datetime] | None = None, mail: bool = True
    ) -> None:
        self.publisher = publisher
        self.clock = ClockWorker(publisher=publisher, now=now)
        self.workers: list[Worker] = [self.clock] + ([MailWorker()] if mail else [])

    def start(self) -> Clock:
        for worker in self.workers:
            worker.start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds in all; True if every thread ended."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(deadline - time.monotonic(), 0))
        return not any(worker.is_alive() for worker in self.workers)
