"""What every socket shares: JSON frames, the rate limit, rooms, credentials, and the one way frames go out.

A consumer is a member of rooms in this process's fan-out (`realtime.fanout`),
not of a channel layer: it has no channel and no receive loop of its own for
room messages. The fan-out calls it (`receive_frame`, `receive_count`, `lost`)
on the event loop, and it writes each frame at once (`write`): under
`manage.py serve` straight onto daphne's socket, framed once for the whole room
(`realtime.server`); under another ASGI server through an ordered queue of ASGI
sends. Everything a consumer sends goes through `write`, so its own answers and
its rooms' frames keep their order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from accounts import services as account_services
from accounts.exceptions import SessionEnded
from accounts.middleware import CLOSE_UNAUTHORIZED
from lots.events import EventType, dumps
from ops.exceptions import DomainError
from ops.metrics import WEBSOCKETS_OPEN
from realtime.fanout import CLOSE, EVENT, TEXT, Frame, get_hub
from realtime.server import DIRECT_SEND

logger = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
# 1009 is the standard code, but daphne (autobahn) lets a server send only 1000 and 3000-4999;
# like 4008 (too slow) for 1008, the application code is the standard one plus 3000.
CLOSE_TOO_BIG = 4009
# The fan-out lost Redis: reconnect with ?since= (as daphne's own 1011 for a failing application).
CLOSE_SERVICE_LOST = 1011
MAX_HISTORY = 100
MAX_REQUEST_ID = 100


class ProtocolError(Exception):
    """A request refused: an ERROR frame with `code`, `message` and `extra` (e.g. `retry_after`)."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


class TokenBucket:
    """A per-connection message rate limit."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.capacity = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def query_param(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def user_context(user) -> dict[str, Any]:
    # No HTTP request behind a socket: the serializer shows this viewer's view,
    # with media URLs relative to the site.
    return {"viewer": user}


def _answering(frame: dict) -> dict[str, str]:
    """An ERROR names the request it answers by the request's own `request_id`, when it carried a valid one."""
    try:
        request_id = request_id_of(frame)
    except ProtocolError:
        return {}
    return {} if request_id is None else {"request_id": request_id}


def request_id_of(frame: dict) -> str | None:
    from bids import services as bid_services

    request_id = frame.get("request_id")
    if request_id is None:
        return None
    if (
        not isinstance(request_id, str)
        or not 1 <= len(request_id) <= MAX_REQUEST_ID
        or not bid_services.storable_text(request_id)
    ):
        raise ProtocolError("invalid_request_id", f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters.")
    return request_id


def limit_of(frame: dict) -> int:
    limit = frame.get("limit", 20)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
        raise ProtocolError("invalid_limit", f"limit must be an integer from 1 to {MAX_HISTORY}.")
    return limit


def seq_of(text: str | None) -> int | None:
    """A `seq` from a query string: ASCII digits only (isdigit() alone passes "²", which int() refuses)."""
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


@functools.lru_cache(maxsize=1024)
def users_count_frame(count: int) -> Frame:
    """The USERS_COUNT frame of a count: built and framed once for every socket that hears it."""
    return Frame(TEXT, dumps({"type": EventType.USERS_COUNT, "count": count}))


@database_sync_to_async
def _session_open(user) -> bool:
    try:
        account_services.ensure_session_open(user=user)
    except SessionEnded:
        return False
    return True


class SocketConsumer(AsyncWebsocketConsumer):
    """Text frames of JSON objects with a `type`; everything else gets an ERROR."""

    handlers: dict[str, str] = {}
    direct_send = None
    expiry = None
    # Room frames that came while a request was being handled (None: none is).
    held: list | None = None
    close_after_request: int | None = None
    counted = left = False

    async def __call__(self, scope, receive, send) -> None:
        """Channels' consumer loop, for a socket with no channel: its client's messages, one at a time.

        Channels' own loop (`await_many_dispatch`) waits on the client and a channel
        with a task per message and an `asyncio.wait`, and looks a channel layer up
        per socket; with the client the only source, a plain loop does the same.
        """
        self.scope, self.channel_layer, self.base_send = scope, None, send
        self.rooms: list[str] = []
        # Under `manage.py serve`, frames go straight onto daphne's socket (realtime/server.py);
        # elsewhere through one ordered queue of ASGI sends, drained by one task at a time.
        self.direct_send = scope.get("extensions", {}).get(DIRECT_SEND, {}).get("send_frame")
        self.queued: collections.deque[dict] = collections.deque()
        self.drainer: asyncio.Task | None = None
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # daphne cancels an application still running `application_close_timeout`
            # after its socket closed. Settle this process's books; nothing waits on I/O.
            self.leave_locally()
            raise
        except Exception:
            # A handler raised: daphne closes the socket with 1011 and no
            # websocket.disconnect follows, so leave the rooms and counts here.
            self.leave_locally()
            raise

    async def dispatch(self, message) -> None:
        # Without Channels' `aclose_old_connections` hop to the database thread before every
        # message: every database call here runs through `database_sync_to_async`, which does it.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message) -> None:
        self.bucket = TokenBucket(settings.WS_MESSAGES_PER_SECOND, settings.WS_MESSAGE_BURST)
        WEBSOCKETS_OPEN.labels(type(self).__name__).inc()
        self.counted = True
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message) -> None:
        self.leave_locally()
        await self.disconnect(message["code"])
        raise StopConsumer

    # --- Writing ----------------------------------------------------------------

    def write(self, frame: Frame | str) -> None:
        """Put a frame on the socket now, in order with everything written before; never waits."""
        if self.left:
            return
        if self.direct_send is not None:
            self.direct_send(frame)
            return
        self._queue({"type": "websocket.send", "text": frame if isinstance(frame, str) else frame.text})

    def deliver(self, frame: Frame | str) -> None:
        """A room's frame: written now, or after the answer to the request this socket is handling.

        A bidder hears the answer to its bid before the room hears the bid.
        """
        if self.held is not None:
            self.held.append(frame)
        else:
            self.write(frame)

    async def base_send_ordered(self, message: dict) -> None:
        if self.direct_send is not None:
            await self.base_send(message)
        else:
            self._queue(message)

    def _queue(self, message: dict) -> None:
        self.queued.append(message)
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.queued:
            await self.base_send(self.queued.popleft())

    async def send(self, text_data=None, bytes_data=None, close=False) -> None:
        if text_data is not None:
            self.write(text_data)
        elif bytes_data is not None:
            await self.base_send_ordered({"type": "websocket.send", "bytes": bytes_data})
        if close:
            await self.close(close)

    async def accept(self, subprotocol=None, headers=None) -> None:
        message = {"type": "websocket.accept", "subprotocol": subprotocol}
        if headers:
            message["headers"] = list(headers)
        await self.base_send_ordered(message)

    async def close(self, code=None, reason=None) -> None:
        message = {"type": "websocket.close"}
        if code is not None and code is not True:
            message["code"] = code
        if reason:
            message["reason"] = reason
        await self.base_send_ordered(message)

    def close_soon(self, code: int) -> None:
        """Close from a callback of the fan-out (which must not wait)."""
        if not self.left:
            asyncio.get_running_loop().create_task(self.close(code=code))

    async def send_json(self, payload: dict[str, Any]) -> None:
        self.write(dumps(payload))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        self.write(dumps({"type": EventType.ERROR, "code": code, "message": message, **extra}))

    # --- Rooms --------------------------------------------------------------------

    async def join(self, room: str, *, counted: bool = False) -> None:
        """Join `room` of this process's fan-out; raises a Redis error when the room cannot be subscribed."""
        await get_hub().join(room, self, counted=counted)
        self.rooms.append(room)

    def count_in(self, room: str) -> None:
        """Count this socket among the watchers of `room`, which it joined."""
        get_hub().count_in(room, self)

    def receive_frame(self, room: str, frame: Frame) -> None:
        if frame.kind == EVENT:
            self.receive_event(frame)
        elif frame.kind == CLOSE:
            self.close_soon(CLOSE_UNAUTHORIZED)
        else:
            self.deliver(frame)

    def receive_event(self, frame: Frame) -> None:
        """A lot event (with `lot_id` and `seq`): the lot and sale rooms order them."""

    def receive_count(self, room: str, count: int) -> None:
        self.deliver(users_count_frame(count))

    def lost(self) -> None:
        if self.held is not None:
            # Handling a request (a bid, say): its answer goes out first, then the close.
            self.close_after_request = CLOSE_SERVICE_LOST
        else:
            self.close_soon(CLOSE_SERVICE_LOST)

    async def accept_watcher(self) -> bool:
        """Accept the socket; False, once closed, if it may not watch (anonymous where that is off, sessions ended)."""
        await self.accept()
        if not self.scope["user"].is_authenticated and not settings.WS_ANONYMOUS_CAN_WATCH:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return False
        return await self.watch_credentials()

    async def watch_credentials(self) -> bool:
        """Close with 4401 when the credentials that opened the socket expire, or its user's sessions end.

        Sessions end (logout, password change or reset, deactivation) with a
        message to the user's account room on every process. Returns False if they
        already ended, between the handshake's check and the join, and the socket closed.
        """
        user = self.scope["user"]
        if not user.is_authenticated:
            return True
        await self.join(account_services.account_group(user.pk))
        if not await _session_open(user):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return False
        expires_at = self.scope.get("auth_expires_at")
        if expires_at is not None:
            # A timer, not a task: nothing runs for an idle socket until then.
            delay = max((expires_at - timezone.now()).total_seconds(), 0)
            self.expiry = asyncio.get_running_loop().call_later(delay, self.close_soon, CLOSE_UNAUTHORIZED)
        return True

    def leave_locally(self) -> None:
        """Leave every room and settle this process's books (gauge, timers); no I/O, once."""
        if self.left:
            return
        self.left = True
        if self.counted:
            WEBSOCKETS_OPEN.labels(type(self).__name__).dec()
        if self.expiry is not None:
            self.expiry.cancel()
        with contextlib.suppress(RuntimeError):  # No loop: nothing joined.
            hub = get_hub()
            for room in self.rooms:
                hub.leave(room, self)

    # --- Client frames ----------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(bytes_data) if text_data is None else len(text_data.encode())
        if size > settings.WS_MAX_MESSAGE_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if text_data is None:
            await self.send_error("binary_not_supported", "Send JSON text frames.")
            return
        if not self.bucket.take():
            await self.send_error("rate_limited", "Too many messages; slow down.")
            return
        try:
            # Numbers stay exact: floats arrive as Decimals, and NaN or Infinity as
            # Decimals the amount check refuses; never as strings, which a
            # request_id or a chat text would take.
            frame = json.loads(text_data, parse_float=Decimal, parse_constant=Decimal)
        except (ValueError, RecursionError):
            await self.send_error("invalid_json", "The frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_error("invalid_message", "A frame is a JSON object with a string `type`.")
            return
        handler = self.handlers.get(frame["type"])
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {frame['type'][:40]!r}.")
            return
        self.held = []
        try:
            await getattr(self, handler)(frame)
        except (ProtocolError, DomainError) as exc:
            # A DomainError here is one the handler did not render, e.g.
            # `lot_not_found` for a lot deleted while the socket was open.
            await self.send_error(exc.code, exc.message, **exc.extra, **_answering(frame))
        except (OperationalError, InterfaceError):
            logger.warning("database unavailable during %s", frame["type"])
            # A bid's answer names its request_id, so the client retries that bid with it.
            bid = {"request_id": frame.get("request_id")} if frame["type"] in ("NEW_BID", "BUY_NOW") else {}
            await self.send_error("service_unavailable", "The service is briefly unavailable; retry shortly.", **bid)
        finally:
            held, self.held = self.held, None
            for room_frame in held:
                self.write(room_frame)
            if self.close_after_request is not None:
                await self.close(code=self.close_after_request)

    async def ping(self, frame: dict) -> None:
        await self.send_json({"type": EventType.PONG, "server_time": timezone.now()})

    def require_user(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            raise ProtocolError("auth_required", "Log in to do this.")
        return user
