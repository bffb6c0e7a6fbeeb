"""Daphne's WebSocket protocol with a bound on what waits for a client that stopped reading.

ASGI's `websocket.send` has no backpressure: daphne hands every frame to
Twisted, which keeps whatever the kernel's send buffer will not take, without
limit. A watcher that stops reading (a frozen tab, a stalled link) would make
the process hold every later event of its lot. Once more than
`WS_SEND_BUFFER_BYTES` wait in Twisted's buffer, the socket is closed with
4008 instead; the client reconnects with `?since=<last seq>` and is replayed
what it missed. Healthy sockets, whose buffer stays empty, pay one length check
per frame.
"""

from __future__ import annotations

import logging

from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

logger = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
CLOSE_INTERNAL_ERROR = 1011


def unsent_bytes(transport) -> int:
    """Bytes Twisted holds for a TCP transport, beyond what the kernel took (0 for other transports)."""
    buffered = getattr(transport, "dataBuffer", b"")
    return len(buffered) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)


class BoundedSendWebSocketProtocol(WebSocketProtocol):
    def serverSend(self, content, binary=False):
        if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return  # Closed for being too slow: the consumer learns it from websocket.disconnect.
        if self.state == self.STATE_OPEN and unsent_bytes(self.transport) > settings.WS_SEND_BUFFER_BYTES:
            logger.warning(
                "websocket closed: client too slow",
                extra={"event": "websocket.too_slow", "path": self.path.decode("latin-1", "replace")},
            )
            # The close frame waits behind the backlog; a client that still
            # does not read is dropped after autobahn's close handshake timeout.
            self.sendClose(code=CLOSE_TOO_SLOW, reason="too slow: reconnect with ?since=")
            return
        super().serverSend(content, binary)

    def serverClose(self, code=None):
        # autobahn's sendClose refuses 1011 from an application; daphne sends it
        # itself (sendCloseFrame) when an application raises. The Redis outage
        # guard (auction_site/outages.py) closes with it rather than raise.
        if code == CLOSE_INTERNAL_ERROR and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False)
            return
        super().serverClose(code)
