"""/ws/lots/<id>/: a lot's room."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.utils import timezone

from bids import selectors as bid_selectors
from bids import services as bid_services
from bids.batches import lot_bids, on_hot_path_threads
from bids.events import bid_outcome_payload
from bids.exceptions import BidRejected, InvalidBid
from bids.serializers import BidSerializer, ChatMessageSerializer
from lots import selectors as lot_selectors
from lots import services as lot_services
from lots.events import EventType, dumps, lot_group
from lots.models import LotStatus
from lots.serializers import LotSerializer, RegistrationSerializer
from ops.exceptions import DomainError
from realtime.consumers.base import (
    CLOSE_NOT_FOUND,
    ProtocolError,
    SocketConsumer,
    limit_of,
    query_param,
    request_id_of,
    seq_of,
    user_context,
)
from realtime.fanout import Frame, get_hub
from realtime.streams import LotStream, events_since

# An anonymous watcher's LOT_STATUS is everyone's: a room reuses one read this long
# (and never past the lot's next opening or end, nor past a later event).
JOIN_SNAPSHOT_SECONDS = 1.0


@on_hot_path_threads
def lot_status(lot_id: int, user) -> dict[str, Any] | None:
    lot = lot_services.visible_lot_settled(lot_id=lot_id, user=user)
    if lot is None:
        return None
    registration = lot_selectors.get_registration(auction_id=lot.auction_id, user=user)
    due = {LotStatus.SCHEDULED: lot.starts_at, LotStatus.OPEN: lot.ends_at}.get(lot.status)
    serialized = LotSerializer(lot, context=user_context(user)).data
    return {
        "seq": lot.seq,
        "lot": serialized,
        # Encoded once: every anonymous joiner that reuses this read sends the same bytes.
        "lot_json": dumps(serialized),
        "registration": RegistrationSerializer(registration).data if registration else None,
        "fresh_for": JOIN_SNAPSHOT_SECONDS if due is None else min(JOIN_SNAPSHOT_SECONDS, seconds_until(due)),
    }


def seconds_until(moment) -> float:
    return (moment - timezone.now()).total_seconds()


async def status_for_join(lot_id: int, user) -> dict[str, Any] | None:
    """The lot's state for a socket that just joined its room: one read, shared by anonymous joiners."""
    room, hub = lot_group(lot_id), get_hub()
    if not user.is_authenticated and (status := hub.snapshot(room)) is not None:
        return status
    status = await lot_status(lot_id, user)
    if status is not None and not user.is_authenticated and status["fresh_for"] > 0:
        hub.keep_snapshot(room, status["seq"], status, seconds=status["fresh_for"])
    return status


@database_sync_to_async
def _history(lot_id: int, limit: int, user) -> list[dict]:
    bids = bid_selectors.list_public_bids(lot_id=lot_id)[:limit]
    return BidSerializer(bids, many=True, context=user_context(user)).data


@on_hot_path_threads
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
def _chat_history(lot_id: int, limit: int) -> list[dict]:
    return ChatMessageSerializer(bid_selectors.list_chat_messages(lot_id=lot_id)[:limit], many=True).data


async def send_lot_status(consumer: SocketConsumer, status: dict) -> None:
    """A lot's fresh state: on joining its room, or in either room after a gap too long to replay."""
    head = dumps(
        {
            "type": EventType.LOT_STATUS,
            "lot_id": status["lot"]["id"],
            "seq": status["seq"],
            "server_time": timezone.now(),
        }
    )
    await consumer.send(
        text_data=f'{head[:-1]},"lot":{status["lot_json"]},"registration":{dumps(status["registration"])}}}'
    )


def lot_stream(consumer: SocketConsumer, lot_id: int, last_seq: int | None = None) -> LotStream:
    """A lot's events to `consumer`'s socket; a gap too long to replay gets a fresh LOT_STATUS."""

    async def resync() -> int | None:
        status = await lot_status(lot_id, consumer.scope["user"])
        if status is None:
            return None
        await send_lot_status(consumer, status)
        return status["seq"]

    return LotStream(lot_id, write=consumer.deliver, resync=resync, last_seq=last_seq)


class LotConsumer(SocketConsumer):
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
    stream: LotStream | None = None

    async def connect(self) -> None:
        self.lot_id = int(self.scope["url_route"]["kwargs"]["lot_id"])
        self.stream = lot_stream(self, self.lot_id)
        user = self.scope["user"]
        if not await self.accept_watcher():
            return
        # Join before reading the state: an event committed in between is
        # then either in the snapshot (and dropped by seq) or held by the stream.
        # Counted once the state is sent: the count reaches a socket that has it.
        await self.join(lot_group(self.lot_id))
        status = await status_for_join(self.lot_id, user)
        if status is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self._send_initial_state(status)
        self.count_in(lot_group(self.lot_id))

    async def _send_initial_state(self, status: dict) -> None:
        since = seq_of(query_param(self.scope, "since"))
        if since is not None and since <= status["seq"]:
            missed = await events_since(self.lot_id, since)
            if missed is not None:
                self.stream.start(since, missed)
                return
        await send_lot_status(self, status)
        self.stream.start(status["seq"])

    def receive_event(self, frame: Frame) -> None:
        self.stream.receive(frame.seq, frame)

    def leave_locally(self) -> None:
        if not self.left and self.stream is not None:
            self.stream.close()
        super().leave_locally()

    # --- Client requests -----------------------------------------------------

    async def new_bid(self, frame: dict) -> None:
        bidder = self.require_user()
        request_id = request_id_of(frame)
        if "amount" not in frame:
            raise ProtocolError("invalid_amount", "amount is required.")
        try:
            request = bid_services.bid_request(
                lot_id=self.lot_id,
                bidder=bidder,
                amount=frame["amount"],
                max_amount=frame.get("max_amount"),
                idempotency_key=request_id,
            )
            outcome = await lot_bids(self.lot_id).place(request)
        except BidRejected as exc:
            await self._send_rejection(request_id, exc)
            return
        await self._send_acceptance(request_id, outcome)

    async def buy_now(self, frame: dict) -> None:
        buyer = self.require_user()
        request_id = request_id_of(frame)
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
                "type": EventType.BID_REJECTED,
                "request_id": request_id,
                "code": exc.code,
                "message": exc.message,
                "min_next_bid": exc.extra.get("min_next_bid"),
                # Only for `rate_limited`: the seconds until bids are counted afresh.
                **({"retry_after": exc.extra["retry_after"]} if "retry_after" in exc.extra else {}),
            }
        )

    async def _send_acceptance(self, request_id: str | None, outcome: bid_services.BidOutcome) -> None:
        await self.send_json({"type": EventType.BID_ACCEPTED, "request_id": request_id, **bid_outcome_payload(outcome)})

    async def get_history(self, frame: dict) -> None:
        limit = limit_of(frame)
        await self.send_json(
            {"type": EventType.BID_HISTORY, "bids": await _history(self.lot_id, limit, self.scope["user"])}
        )

    async def chat(self, frame: dict) -> None:
        request_id_of(frame)  # refused before the message is posted: its ERROR could name no request
        author = self.require_user()
        try:
            await _post_chat(lot_id=self.lot_id, author=author, text=frame.get("text"))
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message, **exc.extra) from exc

    async def get_chat(self, frame: dict) -> None:
        limit = limit_of(frame)
        await self.send_json({"type": EventType.CHAT_HISTORY, "messages": await _chat_history(self.lot_id, limit)})

    async def hide_chat(self, frame: dict) -> None:
        request_id_of(frame)
        actor = self.require_user()
        message_id = frame.get("id")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise ProtocolError("invalid_message", "HIDE_CHAT needs the message's integer `id`.")
        try:
            await _hide_chat(lot_id=self.lot_id, message_id=message_id, actor=actor)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message, **exc.extra) from exc

    async def close_auction(self, frame: dict) -> None:
        actor = self.require_user()
        try:
            await _close_lot(lot_id=self.lot_id, actor=actor)
        except DomainError as exc:
            raise ProtocolError(exc.code, exc.message, **exc.extra) from exc
