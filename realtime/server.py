"""Daphne, as `manage.py serve` runs it: frames written straight to the socket, and a bound on what a slow reader costs.

Small adaptations, on daphne's and autobahn's own classes:

1. **Direct writes** (`AuctionServer`, `send_frame`): a WebSocket's scope carries the ASGI
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

3. **Idle sockets that cost next to nothing**: daphne checks every connection
   every second (finished applications) and every two seconds (timeouts and
   keep-alive pings); here every fifth time, and the ping goes out every
   `WS_PING_SECONDS` (60) instead of 20: with 10,000 idle sockets a process spent
   most of its idle time on those loops and on the pings and pongs. autobahn
   pretty-prints every connection's options for a debug line that is never
   written (a tenth of a handshake's time): the formatting is left until a
   debug log asks for it.

4. **No full garbage collection of start-up's objects**: once serving, what
   was loaded (Django, the URLconf, the serializers) is frozen out of the
   collector's generations (`gc.freeze`); full collections had paused the
   process 72-90 ms every few seconds under fan-out, walking objects that live
   as long as the process. It is frozen before the server's own set-up
   (`ready_callable`) as well as after the collection that follows it: with the
   second freeze alone, full passes still paused a process 65-80 ms under
   480 bids/s (timed with `gc.callbacks`); with both, none took over 12 ms.
"""

from __future__ import annotations

import gc
import logging
import pprint

from autobahn.websocket import protocol as autobahn_protocol
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from twisted.internet import reactor

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
            # The close frame waits behind the backlog, where a client that does not read
            # never finds it: dropped soon (autobahn's 1 s, as rounded), its memory freed.
            self.closeHandshakeTimeout = SLOW_READER_CLOSE_SECONDS
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
            return
        prepared = frame.prepared(self.factory)
        if self._perMessageCompress is not None and not prepared.doNotCompress:
            self.sendPreparedMessage(prepared)  # Compressed per socket.
            return
        self._send_now(prepared.payloadHybi)

    def _send_now(self, data: bytes) -> None:
        """Hand `data` to the kernel at once when nothing waits before it.

        Twisted's `write` only buffers, registers the socket for writing and
        sends on the loop's next turn: two `epoll_ctl` calls and a turn per frame,
        the largest part of a frame's cost in a room of thousands. What the
        kernel does not take, and anything behind bytes already waiting (or on
        TLS), goes through Twisted as before.
        """
        transport = self.transport
        if (
            self.send_queue
            or getattr(transport, "TLS", True)
            or not transport.connected
            or transport.disconnecting
            or unsent_bytes(transport)
        ):
            self.sendData(data)
            return
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.sendData(data)  # A broken connection: Twisted notices and closes it its own way.
            return
        if sent < len(data):
            transport.write(data[sent:])

    def serverClose(self, code=None):
        # autobahn's sendClose refuses 1011 from an application; daphne sends it
        # itself (sendCloseFrame) when an application raises. Sockets whose
        # fan-out lost Redis, and the Redis outage guard, close with it.
        if code == CLOSE_INTERNAL_ERROR and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False)
            return
        super().serverClose(code)


# daphne's connection checks run every CHECKS_EVERY-th time it would run them (every 5 s and 10 s).
CHECKS_EVERY = 5
# How long a socket the server closed may take to answer the close before it is dropped. autobahn's
# timers round the moment down to the whole second (txaio's batched timer), so its default of 1 s
# fired anywhere from at once to 1 s later: on a busy machine a socket accepted and closed at once
# (a refusal with 4404 or 4401) was dropped before Twisted had sent its handshake answer.
CLOSE_HANDSHAKE_SECONDS = 5
# ...except for a slow reader (4008), whose close waits behind what it does not read.
SLOW_READER_CLOSE_SECONDS = 1


class _Deferred:
    """`pformat(value)` for a log line: formatted only if the line is written."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


autobahn_protocol.pformat = _Deferred


class AuctionServer(Server):
    """daphne's server with the protocol above, the direct-write extension in every WebSocket's scope, fewer checks."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("ping_interval", settings.WS_PING_SECONDS)
        super().__init__(*args, **kwargs)
        self.check_rounds = {"application_checker": 0, "timeout_checker": 0}

    def _every_fifth(self, name: str, check, interval: float) -> None:
        self.check_rounds[name] += 1
        if self.check_rounds[name] % CHECKS_EVERY == 0:
            check()  # daphne's own check, which schedules the next round itself
        else:
            reactor.callLater(interval, getattr(self, name))

    def application_checker(self):
        self._every_fifth("application_checker", super().application_checker, 1)

    def timeout_checker(self):
        self._every_fifth("timeout_checker", super().timeout_checker, 2)

    def run(self):
        ready = self.ready_callable

        def install() -> None:
            self.ws_factory.protocol = BoundedSendWebSocketProtocol
            self.ws_factory.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_SECONDS)
            gc.freeze()
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
