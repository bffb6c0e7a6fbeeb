"""The auction clock: opens and closes lots on time, warns watchers, sends e-mail.

It sleeps until the next due time (or a wake-up on the channel layer when lot
times change) instead of polling. Each step claims due lots with SKIP LOCKED
(one at a time, or a batch when closing), so any number of clocks may run
side by side and every lot opens and closes exactly once. On start it
catches up with whatever fell due while no clock ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from bids.events import CLOCK_GROUP
from bids.mailer import has_pending_emails, send_pending_emails
from lots import selectors, services

logger = logging.getLogger(__name__)

MIN_SLEEP_SECONDS = 0.01
# A wake-up channel that fails sooner than this after listening is down.
LAYER_RETRY_SECONDS = 1.0
# After a wake-up, the ones queued behind it are taken while each comes this fast.
QUEUED_WAKE_UP_WAIT_SECONDS = 0.005
MAX_QUEUED_WAKE_UPS = 1000
# E-mail per round: batches this small, started for this long at most.
MAIL_BATCH = 5
MAIL_SECONDS_PER_ROUND = 0.25


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
    # A few e-mails at a time, for a moment: a slow mail server never holds
    # back the next lot that falls due (the clock comes back at once for more).
    tick.emailed = send_pending_emails(limit=MAIL_BATCH, until=time.monotonic() + MAIL_SECONDS_PER_ROUND)
    return tick


def seconds_until_next_due() -> float:
    if has_pending_emails():
        return MIN_SLEEP_SECONDS
    due = selectors.next_due_at()
    limit = settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS
    if due is None:
        return limit
    return min(max((due - timezone.now()).total_seconds(), MIN_SLEEP_SECONDS), limit)


async def run_clock(stop: asyncio.Event) -> None:
    """Run until `stop` is set."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    logger.info("clock started")
    while not stop.is_set():
        try:
            # Joined every round: a group membership lapses after a day on Redis.
            await layer.group_add(CLOCK_GROUP, channel)
        except Exception:
            # Redis is away: nothing wakes the clock, but it still keeps time.
            logger.exception("clock could not join the wake-up group")
        try:
            tick = await database_sync_to_async(run_due_work)()
            if tick.opened or tick.closed or tick.warned or tick.emailed:
                logger.info(
                    "clock: opened %d, closed %d, warned %d, e-mailed %d",
                    tick.opened,
                    tick.closed,
                    tick.warned,
                    tick.emailed,
                )
            delay = await database_sync_to_async(seconds_until_next_due)()
        except Exception:
            # The database is away: try again shortly, never die.
            logger.exception("clock round failed")
            delay = 1.0
        await _sleep_or_wake(layer, channel, delay, stop)
    try:
        await layer.group_discard(CLOCK_GROUP, channel)
    except Exception:
        logger.exception("clock could not leave the wake-up group")
    logger.info("clock stopped")


async def _sleep_or_wake(layer, channel: str, delay: float, stop: asyncio.Event) -> None:
    """Sleep `delay` seconds or until woken, then take the wake-ups queued behind the first.

    The next round answers them all: a burst of wake-ups (every new
    notification and every change of a lot's times wakes every clock) costs
    one round, not one round each.
    """
    started = time.monotonic()
    wake = asyncio.ensure_future(layer.receive(channel))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({wake, stopped}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        if wake not in done:
            return
        if wake.exception() is None:
            await _take_queued_wake_ups(layer, channel)
        elif time.monotonic() - started < LAYER_RETRY_SECONDS:
            # The layer fails at once while Redis is away: sleep all the same
            # rather than spin. (A read that failed after a while timed out on
            # an idle connection: the next round listens again.)
            logger.error("clock wake-up channel failed: %r", wake.exception())
            await asyncio.wait({stopped}, timeout=max(delay - (time.monotonic() - started), 0))
    finally:
        for task in (wake, stopped):
            task.cancel()


async def _take_queued_wake_ups(layer, channel: str) -> None:
    # Nothing more queued, or the layer failed: either way the round runs next.
    with contextlib.suppress(Exception):
        for _ in range(MAX_QUEUED_WAKE_UPS):
            await asyncio.wait_for(layer.receive(channel), QUEUED_WAKE_UP_WAIT_SECONDS)
