"""Helpers for the clock tests: a clock run as a task, sockets, polling the database.

Async tests reach the ORM through `database_sync_to_async` only: it hands the
connection back after each call, where `sync_to_async` (and the async ORM)
would keep one checked out of the PostgreSQL pool past the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal as D
from unittest import mock

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from auction_site.asgi import application
from conftest import access_token_for
from lots.clock import Clock, ClockWorker
from lots.events import LoopPublisher
from lots.models import Lot, LotStatus
from lots.wakeups import wake_clocks

ORIGIN = (b"origin", b"http://localhost")
# Generous: a receive that times out kills the consumer.
SOCKET_TIMEOUT = 10
POLL_SECONDS = 0.02
# What must happen, happens within this even on a machine at load 12; how
# late is a benchmark figure (`make bench`), never a test's.
GENEROUS = 30


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


class Socket:
    """A WebSocket opened through the real ASGI application; frames are decoded JSON."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    @classmethod
    async def open(cls, path: str, *, user=None) -> Socket:
        if user is not None:
            token = await database_sync_to_async(access_token_for)(user)
            path = f"{path}?token={token}"
        communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
        accepted, _ = await communicator.connect(timeout=SOCKET_TIMEOUT)
        assert accepted, f"{path} was refused"
        return cls(communicator)

    async def receive(self, timeout: float = SOCKET_TIMEOUT) -> dict:
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        return json.loads(output["text"])

    async def wait_for(self, frame_type: str, timeout: float = SOCKET_TIMEOUT) -> dict:
        """The next frame of `frame_type`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.receive(max(deadline - time.monotonic(), 0.01))
            if frame["type"] == frame_type:
                return frame

    async def frames(self, count: int, *, quiet: float = 0.3) -> list[dict]:
        """The next `count` frames, then any more that arrive until none has for `quiet` seconds."""
        frames = [await self.receive() for _ in range(count)]
        while not await self.communicator.receive_nothing(timeout=quiet):
            frames.append(await self.receive())
        return frames

    async def close(self) -> None:
        await self.communicator.disconnect(timeout=SOCKET_TIMEOUT)


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
