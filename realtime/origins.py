"""The WebSocket origin check, saying in the log why it refused a handshake.

Channels' `OriginValidator` answers a refused handshake with a bare 403 and logs
nothing, so a client that sends no `Origin` (most non-browser clients) could
not tell what was wrong. `OriginCheck` refuses the same handshakes and logs one
WARNING per reason at most once a minute (a flood of refusals is counted in
`auction_websockets_refused{reason}` and summed up in the next line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier

from ops.metrics import WEBSOCKETS_REFUSED

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 60
# An origin is the client's text: only this much of it reaches the log.
ORIGIN_LOGGED_CHARS = 200

NO_ORIGIN = "no_origin"
ORIGIN_NOT_ALLOWED = "origin_not_allowed"
WHY = {
    NO_ORIGIN: "no Origin header (send one naming this site or a front end in WEBSOCKET_ALLOWED_ORIGINS)",
    ORIGIN_NOT_ALLOWED: "origin %r is neither one of ALLOWED_HOSTS nor in WEBSOCKET_ALLOWED_ORIGINS",
}


class RefusalLog:
    """At most one WARNING line per reason every `interval` seconds; the refusals in between are counted."""

    def __init__(self, interval: float = LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def refused(self, reason: str, *, origin: str | None, path: str) -> None:
        WEBSOCKETS_REFUSED.labels(reason).inc()
        now = self.clock()
        logged_at = self._logged_at.get(reason)
        if logged_at is not None and now - logged_at < self.interval:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._logged_at[reason] = now
        unlogged = self._unlogged.pop(reason, 0)
        origin = None if origin is None else origin[:ORIGIN_LOGGED_CHARS]
        why = WHY[reason] % origin if reason == ORIGIN_NOT_ALLOWED else WHY[reason]
        since = f"; {unlogged} more refused for this reason since the last line" if unlogged else ""
        logger.warning(
            "refused a websocket handshake to %s: %s%s",
            path,
            why,
            since,
            extra={
                "event": "websocket.origin_refused",
                "reason": reason,
                "origin": origin,
                "path": path,
                "unlogged": unlogged,
            },
        )


class OriginCheck(OriginValidator):
    """Channels' origin check (same rules), whose refusals are logged and counted."""

    def __init__(self, application, allowed_origins: list[str], refusals: RefusalLog | None = None) -> None:
        super().__init__(application, allowed_origins)
        self.refusals = refusals or RefusalLog()

    async def __call__(self, scope, receive, send):
        origin = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                origin = value.decode("latin1")
        if self._allowed(origin):
            return await self.application(scope, receive, send)
        self.refusals.refused(NO_ORIGIN if origin is None else ORIGIN_NOT_ALLOWED, origin=origin, path=scope["path"])
        return await WebsocketDenier()(scope, receive, send)

    def _allowed(self, origin: str | None) -> bool:
        try:
            return self.valid_origin(None if origin is None else urlparse(origin))
        except ValueError:
            # Unparsable (`http://[::1`) or a port out of range: Channels would raise, and daphne log a traceback.
            return False
