"""One log line when Redis goes away and one when it answers again, not a traceback per socket.

While Redis is away every WebSocket handshake fails on the fan-out's Redis (or
the ticket and connection-limit counters), and open sockets are closed; daphne logged
each as an ERROR with its traceback (1,600 in a 30 s outage). `RedisOutageGuard`
wraps the WebSocket stack: a Redis failure closes the socket with 1011, as
daphne did, and is counted; the process logs one WARNING when the first one
comes and one with the count when a room is next subscribed (`realtime.fanout`
tells it).
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

CLOSE_INTERNAL_ERROR = 1011
REDIS_AWAY = (RedisConnectionError, RedisTimeoutError, OSError)


class OutageLog:
    """This process's view of one backing service: failing since when, and how many sockets it cost."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.since: float | None = None
        self.failed_sockets = 0

    def noticed(self, exc: BaseException) -> None:
        """A call to the service failed: the outage starts here unless it already had."""
        if self.since is not None:
            return
        self.since, self.failed_sockets = time.monotonic(), 0
        logger.warning(
            "%s unavailable (%s): websockets that need it are closed with 1011 until it answers; counted, not logged",
            self.service,
            type(exc).__name__,
            extra={"event": f"{self.service}.outage_started"},
        )

    def socket_failed(self, exc: BaseException) -> None:
        self.noticed(exc)
        self.failed_sockets += 1

    def answered(self) -> None:
        """A call that needs the service succeeded: the outage, if any, is over."""
        if self.since is None:
            return
        seconds, self.since = time.monotonic() - self.since, None
        logger.warning(
            "%s available again after %.0f s: %d websockets were refused or closed meanwhile",
            self.service,
            seconds,
            self.failed_sockets,
            extra={"event": f"{self.service}.outage_ended", "refused": self.failed_sockets},
        )


redis_outage = OutageLog("redis")


class RedisOutageGuard:
    """ASGI middleware around the WebSocket stack: a Redis failure is counted and closes the socket with 1011."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        state = {"connected": False, "accepted": False, "closed": False}

        async def tracked_receive():
            message = await receive()
            if message["type"] == "websocket.connect":
                state["connected"] = True
            return message

        async def tracked_send(message):
            if message["type"] == "websocket.accept":
                state["accepted"] = True
            elif message["type"] == "websocket.close":
                state["closed"] = True
            await send(message)

        try:
            return await self.inner(scope, tracked_receive, tracked_send)
        except REDIS_AWAY as exc:
            redis_outage.socket_failed(exc)
            await self._close(state, receive, send)

    @staticmethod
    async def _close(state: dict, receive, send) -> None:
        if state["closed"]:
            return
        if not state["connected"]:
            message = await receive()
            if message["type"] != "websocket.connect":
                return
        if not state["accepted"]:
            # Accept, then close: a close before accept reaches browsers as a bare 403.
            await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})
