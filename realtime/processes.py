"""Which server processes are alive: one heartbeat per process, not one per socket.

Every process that holds sockets has an id and keeps one entry in the Redis
sorted set `rt:processes`, scored by the Unix time at which it lapses. It
renews the entry every `REALTIME_PROCESS_TTL_SECONDS / 3`; a process killed
with -9 stops renewing, and whatever it counted (watchers, sockets per
address) stops counting once its entry lapses, within a minute by default.
"""

from __future__ import annotations

import os
import time
import uuid

PROCESSES_KEY = "rt:processes"

# This process's id: the host's pid plus a random part, since pids are reused across restarts.
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def renew(pipe, process_id: str, ttl: float) -> None:
    """Queue on `pipe` the renewal of `process_id` and the removal of lapsed processes."""
    now = time.time()
    pipe.zadd(PROCESSES_KEY, {process_id: now + ttl})
    pipe.zremrangebyscore(PROCESSES_KEY, "-inf", now)


def read_live(pipe) -> None:
    """Queue on `pipe` the read of the live processes' ids; `live_ids` decodes its result."""
    pipe.zrangebyscore(PROCESSES_KEY, time.time(), "+inf")


def live_ids(result) -> set[str]:
    return {member.decode() if isinstance(member, bytes) else member for member in result}


def forget(pipe, process_id: str) -> None:
    """Queue the removal of `process_id` (a process stopping cleanly)."""
    pipe.zrem(PROCESSES_KEY, process_id)
