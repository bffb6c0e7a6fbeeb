"""WebSocket consumers: a room per lot, per sale, and per user.

Consumers parse, authorize, call one service or selector, and render. Lot
events reach every watcher of a lot's room or its sale's room in `seq` order,
through a `LotStream` per lot (bids/streams.py): a late or lost broadcast is
noticed as a gap and filled from the stored events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from accounts import services as account_services
from accounts.exceptions import SessionEnded
from accounts.middleware import CLOSE_UNAUTHORIZED
from auction_site.exceptions import DomainError
from auction_site.metrics import WEBSOCKETS_OPEN
from auction_site.outages import redis_outage
from bids import selectors as bid_selectors
from bids import services as bid_services
from bids.events import auction_group, dumps, lot_group, lot_min_next_bid, user_group
from bids.exceptions import BidRejected, InvalidBid
from bids.presence import get_announcer, get_presence
from bids.serializers import BidSerializer, ChatMessageSerializer
from bids.streams import LotStream, events_since
from lots import selectors as lot_selectors
from lots import services as lot_services
from lots.serializers import LotSerializer, RegistrationSerializer

logger = logging.getLogger(__name__)

CLOSE_NOT_FOUND = 4404
# 1009 is the standard code, but daphne (autobahn) lets a server send only 1000 and 3000-4999;
# like 4008 (too slow) for 1008, the application code is the standard one plus 3000.
CLOSE_TOO_BIG = 4009
MAX_HISTORY = 100
MAX_REQUEST_ID = 100


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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


def _query_param(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _user_context(user) -> dict[str, Any]:
    # No HTTP request behind a socket: the serializer shows this viewer's view,
    # with media URLs relative to the site.
    return {"viewer": user}


# The hot paths (a bid, a socket's join) run on PostgreSQL on a few threads of
# their own, not on the one thread every consumer of a process shares
# (Channels' thread-sensitive mode): bids on different lots and joins proceed
# side by side, and bids on one lot still go one at a time behind its row lock.
# SQLite takes one writer at a time, so there they keep the shared thread.
HOT_PATH_THREADS = 4
_hot_path_executor = ThreadPoolExecutor(HOT_PATH_THREADS, thread_name_prefix="hot-path")


def _on_hot_path_threads(func):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return database_sync_to_async(func)
    return database_sync_to_async(func, thread_sensitive=False, executor=_hot_path_executor)


@_on_hot_path_threads
def _lot_status(lot_id: int, user) -> dict[str, Any] | None:
    lot = lot_selectors.list_visible_lots(user=user).filter(pk=lot_id).first()
    if lot is None:
        return None
    if lot_services.settle_lot_if_due(lot=lot):
        lot = lot_selectors.get_lot(lot_id=lot_id)
    registration = lot_selectors.get_registration(auction_id=lot.auction_id, user=user)
    return {
        "seq": lot.seq,
        "lot": LotSerializer(lot, context=_user_context(user)).data,
        "registration": RegistrationSerializer(registration).data if registration else None,
    }


@database_sync_to_async
def _history(lot_id: int, limit: int, user) -> list[dict]:
    bids = bid_selectors.list_public_bids(lot_id=lot_id)[:limit]
    return BidSerializer(bids, many=True, context=_user_context(user)).data


@_on_hot_path_threads
def _place_bid(**kwargs) -> bid_services.BidOutcome:
    return bid_services.place_bid(**kwargs)


@_on_hot_path_threads
def _buy_now(**kwargs) -> bid_services.BidOutcome:
    return bid_services.buy_now(**kwargs)


@database_sync_to_async
def _close_lot(**kwargs) -> None:
    lot_services.close_lot(**kwargs)


@database_sync_to_async
def _post_chat(**kwargs) -> None:
    bid_services.post_chat_message(**kwargs)


@database_sync_to_async
def _hide_chat(**kwargs) -> None:
    bid_services.hide_chat_message(**kwargs)


@database_sync_to_async
def _session_open(user) -> bool:
    try:
        account_services.ensure_session_open(user=user)
    except SessionEnded:
        return False
    return True


@database_sync_to_async
def _chat_history(lot_id: int, limit: int) -> list[dict]:
    return ChatMessageSerializer(bid_selectors.list_chat_messages(lot_id=lot_id)[:limit], many=True).data


# Group messages whose handlers only forward a frame: they touch no database.
FORWARDING_MESSAGES = frozenset(
    {"lot.event", "lot.presence", "lot.chat", "user.event", account_services.SESSIONS_ENDED}
)


class JsonFrameConsumer(AsyncWebsocketConsumer):
    """Text frames of JSON objects with a `type`; everything else gets an ERROR."""

    handlers: dict[str, str] = {}
    expiry_task: asyncio.Task | None = None
    rejoin_task: asyncio.Task | None = None
    joined_groups: tuple[str, ...] = ()
    account_group: str | None = None
    counted = left = False

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # daphne cancels an application still running `application_close_timeout`
            # after its socket closed (one stuck on an unreachable Redis, say). Settle
            # this process's own books without waiting on anything; the socket's
            # group and presence entries in Redis lapse on their own.
            self.leave_locally()
            raise
        except Exception:
            # A handler or the channel layer raised (Redis or the database away):
            # daphne closes the socket with 1011 and no websocket.disconnect
            # follows, so leave the rooms, counts and gauge here; else this
            # channel would be re-joined and counted present forever.
            if not self.left:
                with contextlib.suppress(Exception):
                    await self.disconnect(1011)
            raise

    async def dispatch(self, message) -> None:
        # Channels hops to the database thread to close stale connections
        # before every handler; every ORM call here already does that on its
        # own (database_sync_to_async), so a broadcast to N watchers skips N
        # hops onto the thread that bids need.
        if message["type"] in FORWARDING_MESSAGES:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def websocket_connect(self, message) -> None:
        self.bucket = TokenBucket(settings.WS_MESSAGES_PER_SECOND, settings.WS_MESSAGE_BURST)
        WEBSOCKETS_OPEN.labels(type(self).__name__).inc()
        self.counted = True
        await super().websocket_connect(message)

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=dumps(payload))

    async def send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        await self.send_json({"type": "ERROR", "code": code, "message": message, **extra})

    async def join_group(self, group: str) -> None:
        """Join `group` and keep re-joining: the layer drops members older than its group expiry."""
        await self.channel_layer.group_add(group, self.channel_name)
        redis_outage.answered()
        self.joined_groups = (*self.joined_groups, group)
        if self.rejoin_task is None:
            self.rejoin_task = asyncio.get_running_loop().create_task(self._rejoin_forever())

    async def _rejoin_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.WS_GROUP_REFRESH_SECONDS)
            for group in self.joined_groups:
                try:
                    await self.channel_layer.group_add(group, self.channel_name)
                except Exception:  # Redis away: this socket's receive fails and closes it anyway.
                    logger.warning("re-joining %s failed", group)

    async def watch_credentials(self) -> bool:
        """Close with 4401 when the credentials that opened the socket expire, or its user's sessions end.

        Sessions end (logout, password change or reset, deactivation) with a
        message to the user's group on every process. Returns False if they
        already ended, between the handshake's check and the join, and the socket closed.
        """
        user = self.scope["user"]
        if not user.is_authenticated:
            return True
        group = account_services.account_group(user.pk)
        await self.join_group(group)
        self.account_group = group
        if not await _session_open(user):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return False
        expires_at = self.scope.get("auth_expires_at")
        if expires_at is not None:
            delay = (expires_at - timezone.now()).total_seconds()
            self.expiry_task = asyncio.get_running_loop().create_task(self._close_at_expiry(delay))
        return True

    async def _close_at_expiry(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0))
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def account_sessions_ended(self, message: dict) -> None:
        await self.close(code=CLOSE_UNAUTHORIZED)

    def leave_locally(self) -> None:
        """Settle this process's own books for the socket (gauge, timers, buffers); no I/O, once."""
        if self.left:
            return
        self.left = True
        if self.counted:
            WEBSOCKETS_OPEN.labels(type(self).__name__).dec()
        for task in (self.expiry_task, self.rejoin_task):
            if task is not None:
                task.cancel()
        # Group messages still on their way to this socket are dropped, not buffered forever.
        forget_channel = getattr(self.channel_layer, "forget_channel", None)
        if forget_channel is not None:
            forget_channel(self.channel_name)

    async def disconnect(self, code) -> None:
        self.leave_locally()
        if self.account_group is not None:
            with contextlib.suppress(Exception):  # Redis away: the group expiry drops the channel.
                await self.channel_layer.group_discard(self.account_group, self.channel_name)

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
        try:
            await getattr(self, handler)(frame)
        except (ProtocolError, DomainError) as exc:
            # A DomainError here is one the handler did not render, e.g.
            # `lot_not_found` for a lot deleted while the socket was open.
            await self.send_error(exc.code, exc.message)
        except (OperationalError, InterfaceError):
            logger.warning("database unavailable during %s", frame["type"])
            # A bid's answer names its request_id, so the client retries that bid with it.
            bid = {"request_id": frame.get("request_id")} if frame["type"] in ("NEW_BID", "BUY_NOW") else {}
            await self.send_error("service_unavailable", "The service is briefly unavailable; retry shortly.", **bid)

    async def ping(self, frame: dict) -> None:
        await self.send_json({"type": "PONG", "server_time": timezone.now()})

    def require_user(self):
        user = self.scope["user"]
        if not user.is_authenticated:
            raise ProtocolError("auth_required", "Log in to do this.")
        return user


def _request_id(frame: dict) -> str | None:
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


def _limit(frame: dict) -> int:
    limit = frame.get("limit", 20)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
        raise ProtocolError("invalid_limit", f"limit must be an integer from 1 to {MAX_HISTORY}.")
    return limit


def _seq(text: str | None) -> int | None:
    """A `seq` from a query string: ASCII digits only (isdigit() alone passes "²", which int() refuses)."""
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


async def send_lot_status(consumer: JsonFrameConsumer, status: dict) -> None:
    """A lot's fresh state: on joining its room, or in either room after a gap too long to replay."""
    await consumer.send_json(
        {
            "type": "LOT_STATUS",
            "lot_id": status["lot"]["id"],
            "seq": status["seq"],
            "server_time": timezone.now(),
            "lot": status["lot"],
            "registration": status["registration"],
        }
    )


def lot_stream(consumer: JsonFrameConsumer, lot_id: int, last_seq: int) -> LotStream:
    """A lot's events to `consumer`'s socket; a gap too long to replay gets a fresh LOT_STATUS."""

    async def resync() -> int | None:
        status = await _lot_status(lot_id, consumer.scope["user"])
        if status is None:
            return None
        await send_lot_status(consumer, status)
        return status["seq"]

    return LotStream(lot_id, last_seq, send=consumer.send_text, resync=resync)


class LotConsumer(JsonFrameConsumer):
    """/ws/lots/<id>/: a lot's room."""

    handlers = {
        "NEW_BID": "new_bid",
        "BUY_NOW": "buy_now",
        "GET_HISTORY": "get_history",
        "CLOSE_AUCTION": "close_auction",
        "CHAT": "chat",
        "GET_CHAT": "get_chat",
        "HIDE_CHAT": "hide_chat",
        "PING": "ping",
    }

    async def connect(self) -> None:
        self.lot_id = int(self.scope["url_route"]["kwargs"]["lot_id"])
        self.group = lot_group(self.lot_id)
        self.stream = lot_stream(self, self.lot_id, 0)
        self.joined = self.present = False
        user = self.scope["user"]
        await self.accept()
        if not user.is_authenticated and not settings.WS_ANONYMOUS_CAN_WATCH:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        if not await self.watch_credentials():
            return
        # Join before reading the state: an event committed in between is
        # then either in the snapshot (and dropped by seq) or delivered.
        await self.join_group(self.group)
        self.joined = True
        status = await _lot_status(self.lot_id, user)
        if status is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self._send_initial_state(status)
        self.present = True
        count = await get_presence().join(self.group, self.channel_name)
        await get_announcer().announce(self.channel_layer, self.group, count)

    async def _send_initial_state(self, status: dict) -> None:
        since = _seq(_query_param(self.scope, "since"))
        if since is not None and since <= status["seq"]:
            missed = await events_since(self.lot_id, since)
            if missed is not None:
                self.stream.last_seq = since
                await self.stream.replay(missed)
                return
        self.stream.last_seq = status["seq"]
        await send_lot_status(self, status)

    def leave_locally(self) -> None:
        if not self.left:
            if getattr(self, "stream", None) is not None:
                self.stream.close()
            if getattr(self, "present", False):
                # No longer refreshed by this process: the Redis entry lapses unless leave() removes it.
                get_presence().forget(self.group, self.channel_name)
        super().leave_locally()

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        if getattr(self, "joined", False):
            with contextlib.suppress(Exception):  # Redis away: the group expiry drops the channel.
                await self.channel_layer.group_discard(self.group, self.channel_name)
        if not getattr(self, "present", False):
            return
        with contextlib.suppress(Exception):  # A lost count must not break the close.
            count = await get_presence().leave(self.group, self.channel_name)
            await get_announcer().announce(self.channel_layer, self.group, count)

    # --- Events from the group: forwarded in seq order ----------------------

    async def lot_event(self, message: dict) -> None:
        await self.stream.receive(message["seq"], message["text"])

    async def lot_presence(self, message: dict) -> None:
        await self.send_json({"type": "USERS_COUNT", "count": message["count"]})

    async def lot_chat(self, message: dict) -> None:
        await self.send(text_data=message["text"])

    # --- Client requests -----------------------------------------------------

    async def new_bid(self, frame: dict) -> None:
        bidder = self.require_user()
        request_id = _request_id(frame)
        if "amount" not in frame:
            raise ProtocolError("invalid_amount", "amount is required.")
        try:
            outcome = await _place_bid(
                lot_id=self.lot_id,
                bidder=bidder,
                amount=frame["amount"],
                max_amount=frame.get("max_amount"),
                idempotency_key=request_id,
            )
        except BidRejected as exc:
            await self._send_rejection(request_id, exc)
            return
        await self._send_acceptance(request_id, outcome)

    async def buy_now(self, frame: dict) -> None:
        buyer = self.require_user()
        request_id = _request_id(frame)
        try:
            outcome = await _buy_now(lot_id=self.lot_id, buyer=buyer, idempotency_key=request_id)
        except BidRejected as exc:
            await self._send_rejection(request_id, exc)
            return
        await self._send_acceptance(request_id, outcome)

    async def _send_rejection(self, request_id: str | None, exc: BidRejected) -> None:
        if isinstance(exc, InvalidBid):
            # Malformed input, not a refusal by the rules.
            await self.send_error(exc.code, exc.message, request_id=request_id)
            return
        await self.send_json(
            {
                "type": "BID_REJECTED",
                "request_id": request_id,
                "code": exc.code,
                "message": exc.message,
                "min_next_bid": exc.extra.get("min_next_bid"),
                # Only for `rate_limited`: the seconds until bids are counted afresh.
                **({"retry_after": exc.extra["retry_after"]} if "retry_after" in exc.extra else {}),
            }
        )

    async def _send_acceptance(self, request_id: str | None, outcome: bid_services.BidOutcome) -> None:
        bid = outcome.bid
        await self.send_json(
            {
                "type": "BID_ACCEPTED",
                "request_id": request_id,
                "code": "accepted",
                "leading": outcome.leading,
                "replayed": outcome.replayed,
                "bid": {
                    "id": bid.id,
                    "amount": bid.amount,
                    # Your alias on the lot: the room's frames name you by it.
                    "bidder": outcome.alias,
                    "max_amount": bid.max_amount,
                    "is_proxy": bid.is_proxy,
                    "created_at": bid.created_at,
                },
                "min_next_bid": f"{lot_min_next_bid(outcome.lot):.2f}",
            }
        )

    async def get_history(self, frame: dict) -> None:
        limit = _limit(frame)
        await self.send_json({"type": "BID_HISTORY", "bids": await _history(self.lot_id, limit, self.scope["user"])})

    async def chat(self, frame: dict) -> None:
        author = self.require_user()
        try:
            await _post_chat(lot_id=self.lot_id, author=author, text=frame.get("text"))
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message) from exc

    async def get_chat(self, frame: dict) -> None:
        limit = _limit(frame)
        await self.send_json({"type": "CHAT_HISTORY", "messages": await _chat_history(self.lot_id, limit)})

    async def hide_chat(self, frame: dict) -> None:
        actor = self.require_user()
        message_id = frame.get("id")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise ProtocolError("invalid_message", "HIDE_CHAT needs the message's integer `id`.")
        try:
            await _hide_chat(lot_id=self.lot_id, message_id=message_id, actor=actor)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message) from exc

    async def close_auction(self, frame: dict) -> None:
        actor = self.require_user()
        try:
            await _close_lot(lot_id=self.lot_id, actor=actor)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message) from exc


@database_sync_to_async
def _auction_status(slug: str, user, since: dict[int, int]) -> dict[str, Any] | None:
    """A sale and its lots; a lot named in `since` at or below its seq comes as its missed events instead."""
    auction = lot_selectors.list_auctions().filter(slug=slug).first()
    if auction is None:
        return None
    fresh, seqs, replays = [], {}, {}
    for lot in LotSerializer(
        lot_selectors.list_visible_lots(user=user).filter(auction=auction), many=True, context=_user_context(user)
    ).data:
        seqs[lot["id"]] = lot["seq"]
        if lot["id"] in since and since[lot["id"]] <= lot["seq"]:
            missed = bid_selectors.list_events_since(
                lot_id=lot["id"], since=since[lot["id"]], limit=settings.WS_REPLAY_LIMIT
            )
            if missed is not None:
                replays[lot["id"]] = (since[lot["id"]], missed)
                continue
        fresh.append(lot)
    return {
        "auction": {"slug": auction.slug, "title": auction.title},
        "lots": fresh,
        "seqs": seqs,
        "replays": replays,
    }


def _sale_since(text: str | None) -> dict[int, int]:
    """`?since=<lot_id>:<seq>,<lot_id>:<seq>` as {lot_id: seq}; unusable pairs are left out."""
    since: dict[int, int] = {}
    for pair in (text or "").split(","):
        lot_id, _, seq = pair.partition(":")
        lot_id, seq = _seq(lot_id), _seq(seq)
        if lot_id is not None and seq is not None:
            since[lot_id] = seq
    return since


class AuctionConsumer(JsonFrameConsumer):
    """/ws/auctions/<slug>/: every lot event of a sale, each lot's in `seq` order (one `LotStream` per lot)."""

    handlers = {"PING": "ping"}

    async def connect(self) -> None:
        self.group = None
        self.streams: dict[int, LotStream] = {}
        user = self.scope["user"]
        await self.accept()
        if not user.is_authenticated and not settings.WS_ANONYMOUS_CAN_WATCH:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        if not await self.watch_credentials():
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        group = auction_group(slug)
        # Join before reading the state, as in the lot room.
        await self.join_group(group)
        self.group = group
        status = await _auction_status(slug, user, _sale_since(_query_param(self.scope, "since")))
        if status is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        for lot_id, seq in status["seqs"].items():
            # A replayed lot's stream starts where the client left off.
            start = status["replays"][lot_id][0] if lot_id in status["replays"] else seq
            self.streams[lot_id] = lot_stream(self, lot_id, start)
        await self.send_json(
            {
                "type": "AUCTION_STATUS",
                "server_time": timezone.now(),
                "auction": status["auction"],
                "lots": status["lots"],
            }
        )
        for lot_id, (_, missed) in status["replays"].items():
            await self.streams[lot_id].replay(missed)

    def leave_locally(self) -> None:
        if not self.left:
            for stream in getattr(self, "streams", {}).values():
                stream.close()
        super().leave_locally()

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def lot_event(self, message: dict) -> None:
        lot_id = message["lot_id"]
        if lot_id not in self.streams:
            # A lot that joined the sale (or became visible) after the snapshot: from its first event.
            self.streams[lot_id] = lot_stream(self, lot_id, 0)
        await self.streams[lot_id].receive(message["seq"], message["text"])


class NotificationConsumer(JsonFrameConsumer):
    """/ws/notifications/: the logged-in user's own events (OUTBID, WON, ...)."""

    handlers = {"PING": "ping"}

    async def connect(self) -> None:
        self.group = None
        user = self.scope["user"]
        await self.accept()
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        # The user's own group first: the client may act as soon as the socket is open.
        self.group = user_group(user.pk)
        await self.join_group(self.group)
        await self.watch_credentials()

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def user_event(self, message: dict) -> None:
        await self.send(text_data=message["text"])
