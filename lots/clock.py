"""The auction clock: opens and closes lots on time, warns watchers, sends e-mail.

It sleeps until the next due time (or a wake-up on the channel layer when lot
times change) instead of polling. Each step claims one lot at a time with
SKIP LOCKED, so any number of clocks may run side by side and every lot
opens and closes exactly once. On start it catches up with whatever fell due
while no clock ran.
"""

from __future__ import annotations

import asyncio
import logging
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


@dataclass
class Tick:
    opened: int = 0
    closed: int = 0
    warned: int = 0
    emailed: int = 0


def run_due_work(*, now: datetime | None = None) -> Tick:
    """Do everything that is due now."""
    now = now or timezone.now()
    tick = Tick()
    while services.open_next_due_lot(now=now):
        tick.opened += 1
    while services.close_next_due_lot(now=now):
        tick.closed += 1
    while services.announce_next_ending_soon(now=now):
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
    logger.info("clock started")
    while not stop.is_set():
        try:
            # Joined every round: a group membership lapses after a day on Redis.
            await layer.group_add(CLOCK_GROUP, channel)
            tick = await database_sync_to_async(run_due_work)()
            if tick.opened or tick.closed or tick.warned or tick.emailed:
                logger.info("clock: opened %d, closed %d, warned %d, e-mailed %d",
                            tick.opened, tick.closed, tick.warned, tick.emailed)
            delay = await database_sync_to_async(seconds_until_next_due)()
        except Exception:
            # The database or Redis is away: try again shortly, never die.
            logger.exception("clock round failed")
            delay = 1.0
        await _sleep_or_wake(layer, channel, delay, stop)
    await layer.group_discard(CLOCK_GROUP, channel)
    logger.info("clock stopped")


async def _sleep_or_wake(layer, channel: str, delay: float, stop: asyncio.Event) -> None:
    wake = asyncio.ensure_future(layer.receive(channel))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({wake, stopped}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    except Exception:
        logger.exception("clock wake-up channel failed")
    finally:
        for task in (wake, stopped):
            task.cancel()
