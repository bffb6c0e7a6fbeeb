"""Clocks for the tests: run as a task or as `manage.py run_clock` processes, and polling the database.

Async tests reach the ORM through `database_sync_to_async` only: it hands the
connection back after each call, where `sync_to_async` (and the async ORM)
would keep one checked out of the PostgreSQL pool past the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from unittest import mock

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from lots.clock import Clock, ClockWorker
from lots.events import LoopPublisher
from lots.models import Lot, LotStatus
from lots.wakeups import wake_clocks
from testsupport.live_servers import database_url_for_tests

POLL_SECONDS = 0.02
# What must happen, happens within this even on a machine at load 12; how
# late is a benchmark figure (`make bench`), never a test's.
GENEROUS = 30
BASE_DIR = Path(settings.BASE_DIR)
# What a clock process logs after each round.
ROUND_LOG = re.compile(r"clock: opened (\d+), closed (\d+)")


def in_seconds(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def running_clock(*, now: Callable[[], datetime] | None = None, mail: bool = True):
    """The clock and mailer threads, as `manage.py serve` runs them, broadcasting on the test's loop.

    `now`: the time each round runs at (tests drive time with it; `Clock.clock.wake()` runs a round).
    """
    publisher = LoopPublisher(asyncio.get_running_loop())
    clock = Clock(publisher=publisher, now=now, mail=mail).start()
    try:
        yield clock
        assert all(worker.is_alive() for worker in clock.workers), "a worker stopped by itself"
    finally:
        clock.stop()
        ended = await asyncio.to_thread(clock.join, GENEROUS)
        publisher.close()
    assert ended, "the clock did not stop"


@contextlib.contextmanager
def counted_rounds():
    """The clock's rounds as they run: each adds the time it ran at (the injected `now`, if any)."""
    rounds: list[datetime] = []
    run_round = ClockWorker.run_round

    def counting_round(worker: ClockWorker) -> float:
        rounds.append(worker.now() if worker.now else timezone.now())
        return run_round(worker)

    with mock.patch.object(ClockWorker, "run_round", counting_round):
        yield rounds


async def wait_until(
    check: Callable[[], object], *, timeout: float = GENEROUS, what: str = "the condition"
) -> datetime:
    """Poll a synchronous `check` (it may use the ORM) until it is true; the time it first was."""
    deadline = time.monotonic() + timeout
    while True:
        if await database_sync_to_async(check)():
            return timezone.now()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(POLL_SECONDS)


async def wait_for_status(lot_id: int, status: str, *, timeout: float = GENEROUS) -> datetime:
    """When the lot was first seen in `status`."""
    return await wait_until(
        lambda: Lot.objects.filter(pk=lot_id, status=status).exists(),
        timeout=timeout,
        what=f"lot {lot_id} becoming {status}",
    )


def open_lots(seller, ends_at: list[datetime], **fields) -> list[Lot]:
    now = timezone.now()
    lots = Lot.objects.bulk_create(
        Lot(
            seller=seller,
            title=f"Lot {i}",
            currency="USD",
            starting_price=D("10.00"),
            status=LotStatus.OPEN,
            starts_at=now,
            ends_at=end,
            hard_ends_at=end + timedelta(hours=1),
            lot_number=i,
            **fields,
        )
        for i, end in enumerate(ends_at)
    )
    # What create_lot does after its commit: tell the sleeping clocks.
    wake_clocks()
    return lots


class ClockProcess:
    """One `manage.py run_clock` (or another command running a clock), its output kept in a file."""

    def __init__(self, number: int, command: tuple[str, ...] = ("run_clock",), redis_url: str | None = None) -> None:
        self.number = number
        self.log = tempfile.NamedTemporaryFile(prefix=f"clock{number}-", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": redis_url or settings.REDIS_URL,
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *command],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def closed_count(self) -> int:
        return sum(int(closed) for _, closed in ROUND_LOG.findall(self.output()))

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Clocks:
    def __init__(self) -> None:
        self.started: list[ClockProcess] = []

    def start(
        self, count: int, command: tuple[str, ...] = ("run_clock",), redis_url: str | None = None
    ) -> list[ClockProcess]:
        """Start `count` clocks and wait until each has started."""
        new = [ClockProcess(len(self.started) + i, command, redis_url) for i in range(count)]
        self.started += new
        deadline = time.monotonic() + GENEROUS
        for clock in new:
            while "clock started" not in clock.output():
                assert clock.process.poll() is None, f"clock {clock.number} died:\n{clock.output()}"
                assert time.monotonic() < deadline, f"clock {clock.number} did not start:\n{clock.output()}"
                time.sleep(0.05)
        # A schedule change before a clock listens is not lost: it looks at
        # the schedule again once it listens.
        return new

    def report(self) -> str:
        """Every clock's output, for failure messages."""
        return "\n".join(
            f"--- clock {c.number} (exit {c.process.poll()}) ---\n{c.output()[-3000:]}" for c in self.started
        )

    def stop_all(self) -> None:
        for clock in self.started:
            if clock.process.poll() is None:
                clock.process.terminate()
        for clock in self.started:
            clock.stop()
        for clock in self.started:
            Path(clock.log.name).unlink(missing_ok=True)


@contextlib.contextmanager
def clock_processes():
    """Clock processes that are always terminated, their output printed when the test fails."""
    clocks = Clocks()
    try:
        yield clocks
    except BaseException:
        print(clocks.report())
        raise
    finally:
        clocks.stop_all()
