"""The auction clock: opens and closes lots on time, warns watchers, sends e-mail.

It sleeps until the next due time (or a wake-up on the channel layer when lot
times change) instead of polling. Each step claims due lots with SKIP LOCKED
(one at a time, or a batch when closing), so any number of clocks may run
side by side and every lot opens and closes exactly once. On start it
catches up with whatever fell due while no clock ran.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from bids.events import CLOCK_GROUP
from bids.mailer import send_pending_emails
from lots import selectors, services

logger = logging.getLogger(__name__)

MIN_SLEEP_SECONDS = 0.01
# How long the clock waits before listening again when the channel layer fails.
LAYER_RETRY_SECONDS = 1.0


@dataclass
class Tick:
    opened: int = 0
    closed: int = 0
    warned: int = 0
    emailed: int = 0


def run_due_work(*, now: datetime | None = None) -> Tick:
    """Do everything that is due now (or at `now`, which tests pass).

    Each step reads the time afresh: a round with many lots takes a while, and
    a lot must be stamped with the moment it really closed (never before a bid
    it accepted) and never be warned that it ends soon once it has ended.
    """
    tick = Tick()
    while services.open_next_due_lot(now=now or timezone.now()):
        tick.opened += 1
    while closed := services.close_due_lots(now=now):
        tick.closed += len(closed)
    while services.announce_next_ending_soon(now=now or timezone.now()):
        tick.warned += 1
    tick.emailed = send_pending_emails()
    return tick


def seconds_until_next_due() -> float:
    due = selectors.next_due_at()
    limit = settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS
    if due is None:
        return limit
    return min(max((due - timezone.now()).total_seconds(), MIN_SLEEP_SECONDS), limit)


async def run_clock(stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    woken = asyncio.Event()
    # Wake-ups are heard in the background and only raise a flag, so a
    # burst of them (every lot closed wakes every clock) costs one round, and
    # a failing layer never turns the sleep into a busy loop.
    listener = asyncio.ensure_future(_listen(layer, channel, woken))
    logger.info("clock started")
    try:
        while not stop.is_set():
            # This round answers every wake-up so far, however many came.
            woken.clear()
            try:
                # Joined every round: a group membership lapses after a day on Redis.
                await layer.group_add(CLOCK_GROUP, channel)
            except Exception:
                # Redis is away: nothing wakes the clock, but it still keeps time.
                logger.exception("clock could not join the wake-up group")
            try:
                tick = await database_sync_to_async(run_due_work)()
                if tick.opened or tick.closed or tick.warned or tick.emailed:
                    logger.info("clock: opened %d, closed %d, warned %d, e-mailed %d",
                                tick.opened, tick.closed, tick.warned, tick.emailed)
                delay = await database_sync_to_async(seconds_until_next_due)()
            except Exception:
                # The database is away: try again shortly, never die.
                logger.exception("clock round failed")
                delay = 1.0
            await _sleep_or_wake(woken, delay, stop)
    finally:
        listener.cancel()
        try:
            await layer.group_discard(CLOCK_GROUP, channel)
        except Exception:
            logger.exception("clock could not leave the wake-up group")
    logger.info("clock stopped")


async def _listen(layer, channel: str, woken: asyncio.Event) -> None:
    """Set `woken` for every wake-up message, for as long as the clock runs."""
    while True:
        started = time.monotonic()
        try:
            await layer.receive(channel)
        except Exception:
            # A receive that waited a while failed on an idle connection's
            # read timeout: it is simply renewed. One that failed at once
            # means Redis is away: the clock keeps time on its own meanwhile.
            if time.monotonic() - started < LAYER_RETRY_SECONDS:
                logger.exception("clock wake-up channel failed")
                await asyncio.sleep(LAYER_RETRY_SECONDS)
            continue
        woken.set()


async def _sleep_or_wake(woken: asyncio.Event, delay: float, stop: asyncio.Event) -> None:
    waiters = {asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
