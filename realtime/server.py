"""Daphne, as `manage.py serve` runs it: frames written straight to the socket, and a bound on what a slow reader costs.

Three small adaptations, on daphne's own classes:

1. **Direct writes** (`AuctionServer`): a WebSocket's scope carries the ASGI
   extension `auction.send_frame`, a function that writes one frame on the
   socket at once. The fan-out calls it for each local member of a room with a
   frame framed once for all of them (autobahn's `prepareMessage`, its API for
   broadcasting); an ASGI `websocket.send` per socket would go through the
   consumer, the middleware and daphne for every watcher of every event. Under
   another server the extension is absent and consumers send through ASGI.

2. **A bound on what waits for a client that stopped reading**
   (`BoundedSendWebSocketProtocol`): ASGI's `websocket.send` has no
   backpressure; daphne hands every frame to Twisted, which keeps whatever the
   kernel's send buffer will not take, without limit. Once more than
   `WS_SEND_BUFFER_BYTES` wait in Twisted's buffer, the socket is closed with
   4008 instead; the client reconnects with `?since=<last seq>` and is replayed
   what it missed. Healthy sockets, whose buffer stays empty, pay one length
   check per frame.

3. **No full garbage collection of start-up's objects**: once serving, what
   was loaded (Django, the URLconf, the serializers) is frozen out of the
   collector's generations (`gc.freeze`); full collections had paused the
   process 72-90 ms every few seconds under fan-out, walking objects that live
   as long as the process.
"""

from __future__ import annotations

import gc
import logging

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings

logger = logging.getLogger(__name__)

DIRECT_SEND = "auction.send_frame"
CLOSE_TOO_SLOW = 4008
CLOSE_INTERNAL_ERROR = 1011


def unsent_bytes(transport) -> int:
    """Bytes Twisted holds for a TCP transport, beyond what the kernel took (0 for other transports)."""
    buffered = getattr(transport, "dataBuffer", b"")
    return len(buffered) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)


class BoundedSendWebSocketProtocol(WebSocketProtocol):
    def _sendable(self) -> bool:
        if self.state != self.STATE_OPEN:
            return False  # Closing or closed: the consumer learns it from websocket.disconnect.
        if unsent_bytes(self.transport) > settings.WS_SEND_BUFFER_BYTES:
            logger.warning(
                "websocket closed: client too slow",
                extra={"event": "websocket.too_slow", "path": self.path.decode("latin-1", "replace")},
            )
            # The close frame waits behind the backlog; a client that still
            # does not read is dropped after autobahn's close handshake timeout.
            self.sendClose(code=CLOSE_TOO_SLOW, reason="too slow: reconnect with ?since=")
            return False
        return True

    def serverSend(self, content, binary=False):
        if self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return
        if self.state == self.STATE_OPEN and not self._sendable():
            return
        super().serverSend(content, binary)

    def send_frame(self, frame) -> None:
        """Write one frame now: a `realtime.fanout.Frame` (framed once per process) or a text."""
        if not self._sendable():
            return
        if isinstance(frame, str):
            self.sendMessage(frame.encode())
        else:
            self.sendPreparedMessage(frame.prepared(self.factory))

    def serverClose(self, code=None):
        # autobahn's sendClose refuses 1011 from an application; daphne sends it
        # itself (sendCloseFrame) when an application raises. Sockets whose
        # fan-out lost Redis, and the Redis outage guard, close with it.
        if code == CLOSE_INTERNAL_ERROR and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False)
            return
        super().serverClose(code)


class AuctionServer(Server):
    """daphne's server with the protocol above and the direct-write extension in every WebSocket's scope."""

    def run(self):
        ready = self.ready_callable

        def install() -> None:
            self.ws_factory.protocol = BoundedSendWebSocketProtocol
            if ready is not None:
                ready()
            gc.collect()
            gc.freeze()

        self.ready_callable = install
        super().run()

    def create_application(self, protocol, scope):
        if scope.get("type") == "websocket" and isinstance(protocol, BoundedSendWebSocketProtocol):
            extensions = dict(scope.get("extensions") or {})
            extensions[DIRECT_SEND] = {"send_frame": protocol.send_frame}
            scope["extensions"] = extensions
        return super().create_application(protocol, scope)
