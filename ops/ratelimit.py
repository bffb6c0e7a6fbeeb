"""Abuse limits: actions per user per time window.

With `REDIS_URL` they are counted in Redis, so every server process counts
against the same limit; without it there is one process and it counts in
memory. A limit never takes the site down: while Redis is away, requests pass
uncounted (bids must keep committing through a Redis outage). Open WebSockets
per client address are limited in `realtime/limits.py`.
"""

from __future__ import annotations

import logging
import math
import time

from django.core.cache import cache

from ops.outages import REDIS_AWAY

logger = logging.getLogger(__name__)

# The limits' clock; tests replace it to cross a window's end without waiting.
clock = time.time

RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`"30/minute"` -> (30, 60): DRF's format (the unit's first letter counts), and `"20/15m"` for 15 minutes."""
    count, _, period = rate.partition("/")
    period = period.strip().lower()
    digits = period[: len(period) - len(period.lstrip("0123456789"))]
    unit = period[len(digits) : len(digits) + 1]
    if unit not in RATE_UNITS:
        raise ValueError(f"bad rate {rate!r}: expected e.g. 30/minute or 20/15m")
    return int(count), int(digits or 1) * RATE_UNITS[unit]


def take_allowance(key: str, *, limit: int, window: int, fail_open: bool = True) -> int:
    """Count one action against `limit` per `window` seconds (a limit of 0 or less counts nothing).

    Returns 0 when the action is allowed, else the seconds until the window
    ends (for `Retry-After`). Fixed windows in the cache: `add` creates the
    window's counter once and `incr` counts atomically (Redis INCR; locmem
    under its lock), so concurrent callers in any process never pass more
    than `limit`. Across a window boundary a client may get up to 2 x `limit`.
    While Redis is away the action passes uncounted, or with `fail_open=False`
    the Redis error propagates (the REST handler answers 503).
    """
    if limit <= 0:
        return 0
    now = clock()
    index = int(now // window)
    counter = f"allowance:{key}:{index}"
    try:
        count = _count(counter, timeout=window + 30)
    except REDIS_AWAY as exc:
        if not fail_open:
            raise
        logger.warning("rate limit %s not counted: redis unavailable (%s)", key, type(exc).__name__)
        return 0
    except ValueError:
        # The counter was evicted between add and incr (locmem culls when full): count afresh.
        return 0
    if count <= limit:
        return 0
    return max(1, math.ceil((index + 1) * window - now))


def _count(counter: str, *, timeout: int) -> int:
    """Add one to `counter`; the window's first action creates it (`add` is SET NX: once, whoever races).

    Counting first spares every later action of the window the `add` round trip.
    """
    try:
        return cache.incr(counter)
    except ValueError:
        cache.add(counter, 0, timeout=timeout)
        return cache.incr(counter)
