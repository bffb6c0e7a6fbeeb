"""Room names, lot state payloads and the outbox: the one place that hands events to the real-time edge (`ops.broadcasting`).

A service collects its events in an `Outbox` while it holds the lot's lock;
`Outbox.flush` stores the lot's events (numbered by `seq`) in the same
transaction and queues the broadcast for after the commit, so nothing is
sent for a transaction that rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from lots.models import LotEvent, Notification
from lots.pricing import currency_places, min_next_bid
from lots.wakeups import MAIL_CHANNEL, wake_clocks, wake_in_process
from ops import broadcasting
from ops.metrics import BROADCAST_SECONDS

if TYPE_CHECKING:
    from lots.models import Lot

logger = logging.getLogger(__name__)


class EventType(StrEnum):
    """Every frame type the server sends, in one registry; the README's protocol section documents each
    (`bids/tests/test_protocol.py` holds the two to each other). Payloads are built beside the type's
    owner: a lot's in this module, a bid's and the chat's in `bids/events.py`, a socket's answers in
    `realtime/consumers/`."""

    # A lot's room (and its sale's): stored with the lot's next `seq`, replayed after a reconnect.
    NEW_BID = "NEW_BID"
    LOT_EXTENDED = "LOT_EXTENDED"
    LOT_OPENED = "LOT_OPENED"
    LOT_UPDATED = "LOT_UPDATED"
    AUCTION_ENDED = "AUCTION_ENDED"
    # Also a notification, to the bidder whose bids staff voided.
    BIDS_VOIDED = "BIDS_VOIDED"
    # A lot's room, without `seq`: not lot state.
    USERS_COUNT = "USERS_COUNT"
    CHAT_MESSAGE = "CHAT_MESSAGE"
    CHAT_HIDDEN = "CHAT_HIDDEN"
    # To one socket: its state on connecting, and the answers to its frames.
    LOT_STATUS = "LOT_STATUS"
    AUCTION_STATUS = "AUCTION_STATUS"
    BID_ACCEPTED = "BID_ACCEPTED"
    BID_REJECTED = "BID_REJECTED"
    BID_HISTORY = "BID_HISTORY"
    CHAT_HISTORY = "CHAT_HISTORY"
    PONG = "PONG"
    ERROR = "ERROR"
    # Notifications: stored for one user, pushed to /ws/notifications/, e-mailed.
    OUTBID = "OUTBID"
    WON = "WON"
    LOT_SOLD = "LOT_SOLD"
    LOT_UNSOLD = "LOT_UNSOLD"
    ENDING_SOON = "ENDING_SOON"
    LOT_CANCELLED = "LOT_CANCELLED"
    REGISTRATION_DECIDED = "REGISTRATION_DECIDED"


def lot_group(lot_id: int) -> str:
    return f"lot.{lot_id}"


def auction_group(slug: str) -> str:
    return f"auction.{slug}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def dumps(payload: dict[str, Any]) -> str:
    """JSON with Decimal as strings and times in ISO 8601 UTC."""
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))


def lot_min_next_bid(lot: Lot):
    return min_next_bid(
        starting_price=lot.starting_price,
        current_price=lot.current_price,
        fixed_increment=lot.bid_increment,
        places=currency_places(lot.currency),
    )


def lot_price_state(lot: Lot, *, high_bidder_alias: str | None) -> dict[str, Any]:
    """The part of a lot's public state that a bid changes. Bidders are named by their alias on the lot
    (`lots.models.LotAlias`), never by username: one frame serves every watcher."""
    return {
        "current_price": lot.current_price,
        "min_next_bid": lot_min_next_bid(lot),
        "bid_count": lot.bid_count,
        "high_bidder": high_bidder_alias,
        "reserve_met": lot.reserve_met,
        "ends_at": lot.ends_at,
    }


def lot_result(lot: Lot, *, winner_alias: str | None) -> dict[str, Any]:
    return {
        "id": lot.id,
        "status": lot.status,
        "winner": winner_alias,
        "final_price": lot.final_price,
        "closed_at": lot.closed_at,
    }


@dataclass
class Outbox:
    """Events of one lot (and private notifications) produced by one service call."""

    lot: Lot
    events: list[LotEvent] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    # The lot's times moved: clocks read the schedule again after the commit.
    times_changed: bool = False

    def lot_event(self, event_type: EventType, **payload: Any) -> None:
        """A public change: takes the lot's next `seq`."""
        self.lot.seq += 1
        text = dumps({"type": event_type, "lot_id": self.lot.id, "seq": self.lot.seq, **payload})
        self.events.append(LotEvent(lot=self.lot, seq=self.lot.seq, type=event_type, text=text))

    def notify(self, user_id: int, event_type: EventType, **payload: Any) -> None:
        """A private event for one user: stored, pushed to their socket, e-mailed by the mailer."""
        self.notifications.append(Notification(user_id=user_id, lot=self.lot, type=event_type, payload=payload))

    def save_lot(self, *fields: str) -> None:
        """Save the lot's changed `fields`, with the `seq` its events took (and `updated_at`)."""
        self.lot.save(update_fields=[*fields, "seq", "updated_at"])

    def flush(self) -> None:
        """Store the events and notifications now; broadcast them after commit."""
        flush_outboxes([self])


def flush_outboxes(outboxes: list[Outbox]) -> None:
    """Store the outboxes' events and notifications (one insert per table); broadcast them after commit."""
    events = [event for outbox in outboxes for event in outbox.events]
    notifications = [n for outbox in outboxes for n in outbox.notifications]
    if events:
        LotEvent.objects.bulk_create(events)
    if notifications:
        Notification.objects.bulk_create(notifications)
    queue_sends(outboxes)


def queue_sends(outboxes: list[Outbox]) -> None:
    """For stored outboxes: wake the clocks if times moved; broadcast and wake the mailer after commit."""
    if any(outbox.times_changed for outbox in outboxes):
        wake_clocks()
    sends = [
        (
            outbox.lot.id,
            outbox.lot.auction.slug if outbox.lot.auction_id else None,
            [(e.seq, e.text) for e in outbox.events],
            [(n.user_id, notification_text(n)) for n in outbox.notifications],
        )
        for outbox in outboxes
        if outbox.events or outbox.notifications
    ]
    if sends:
        transaction.on_commit(lambda: broadcast_many(sends))
    if any(outbox.notifications for outbox in outboxes):
        _wake_mailer_on_commit()


def _wake_mailer_on_commit() -> None:
    # This process's mailer, if it runs one, sends at once; another process's
    # mailer finds the notification at its next look (AUCTION_MAIL_POLL_SECONDS).
    transaction.on_commit(lambda: wake_in_process(MAIL_CHANNEL))


def notification_text(notification: Notification) -> str:
    return dumps(
        {
            "type": notification.type,
            "id": notification.id,
            "created_at": notification.created_at,
            **notification.payload,
        }
    )


# --- Handing committed events to the fan-out ----------------------------------------

_posting = threading.local()
# A server's own: every thread's broadcasts go out on its event loop (`post_broadcasts_from_threads`).
_server_publisher: LoopPublisher | None = None


def post_broadcasts_from_threads(publisher: LoopPublisher | None) -> None:
    """From now on, broadcasts committed on any thread are handed to `publisher` (None: sent from the thread).

    `manage.py serve` sets it: a bid's answer goes out as soon as its
    transaction commits, and the events follow from the loop, in commit order;
    a send that fails is caught up by the watchers from the stored events.
    """
    global _server_publisher
    _server_publisher = publisher


@contextlib.contextmanager
def broadcasts_posted_to(publisher: LoopPublisher) -> Iterator[None]:
    """Within this block, this thread's broadcasts are handed to `publisher` instead of awaited.

    The clock uses it: a frozen Redis must never hold back the next close.
    """
    previous = getattr(_posting, "publisher", None)
    _posting.publisher = publisher
    try:
        yield
    finally:
        _posting.publisher = previous


def broadcast_many(sends: list[tuple[int | None, str | None, list[tuple[int, str]], list[tuple[int, str]]]]) -> None:
    """Send committed events, each send as (lot_id, auction_slug, events, notifications)."""
    items = fanout_items(sends)
    publisher = getattr(_posting, "publisher", None) or _server_publisher
    if publisher is not None:
        lots = ", ".join(str(send[0]) for send in sends)
        publisher.post(functools.partial(broadcasting.publish_async, items), about=f"lot {lots}")
        return
    try:
        with BROADCAST_SECONDS.time():
            broadcasting.publish(items)
    except Exception:
        # The change is committed and stored; watchers that miss it catch up
        # from the stored events when they notice the gap in `seq`.
        logger.exception("broadcast failed for lot %s", ", ".join(str(send[0]) for send in sends))


def notify_user(user_id: int, event_type: EventType, **payload: Any) -> None:
    """A private event outside any lot: stored now, pushed after commit, e-mailed by the mailer."""
    notification = Notification.objects.create(user_id=user_id, type=event_type, payload=payload)
    text = notification_text(notification)
    transaction.on_commit(lambda: broadcast_many([(None, None, [], [(user_id, text)])]))
    _wake_mailer_on_commit()


def fanout_items(sends) -> list[dict[str, Any]]:
    """The rooms' messages: each lot event to its lot's room and its sale's, each notification to its user's."""
    items: list[dict[str, Any]] = []
    for lot_id, auction_slug, events, notifications in sends:
        for seq, text in events:
            event = {"kind": "event", "lot_id": lot_id, "seq": seq, "text": text}
            items.append({"room": lot_group(lot_id), **event})
            if auction_slug:
                items.append({"room": auction_group(auction_slug), **event})
        items.extend({"room": user_group(user_id), "kind": "text", "text": text} for user_id, text in notifications)
    return items


class LoopPublisher:
    """Sends broadcasts in order on an event loop, for threads that must not wait on Redis.

    Each send gives up after `PUBLISH_TIMEOUT_SECONDS`, and the queue holds
    at most `PUBLISH_QUEUE_LIMIT` sends (the oldest go first): a lot's events
    are stored, so a watcher that misses one fills the gap from the database.
    """

    PUBLISH_TIMEOUT_SECONDS = 5.0
    PUBLISH_QUEUE_LIMIT = 10_000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[None]], str]] | None = None
        self._task: asyncio.Task | None = None
        self._failed = 0
        self._dropped = 0
        self._loop_gone_told = False

    def post(self, send: Callable[[], Awaitable[None]], *, about: str) -> None:
        """Queue `send` (thread-safe); it runs on the loop after the sends posted before it.

        `about` names what it broadcasts ("lot 12") in the warning if it fails.
        """
        try:
            self.loop.call_soon_threadsafe(self._put, send, about)
        except RuntimeError:
            if not self._loop_gone_told:
                self._loop_gone_told = True
                logger.warning("broadcasts not sent: the server's event loop has stopped")

    async def drain(self, timeout: float) -> None:
        """On the loop: wait up to `timeout` seconds for the queued sends to go out."""
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._cancel)

    def _put(self, send: Callable[[], Awaitable[None]], about: str) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._drain())
        if self._queue.qsize() >= self.PUBLISH_QUEUE_LIMIT:
            self._queue.get_nowait()
            self._queue.task_done()
            self._dropped += 1
            if self._dropped == 1:
                logger.warning("broadcast queue full: dropping the oldest sends (watchers catch up from the database)")
        self._queue.put_nowait((send, about))

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            send, about = await self._queue.get()
            try:
                with BROADCAST_SECONDS.time():
                    await asyncio.wait_for(send(), self.PUBLISH_TIMEOUT_SECONDS)
            except Exception as exc:
                # One warning an outage, then a count when it ends.
                if self._failed == 0:
                    logger.warning(
                        "broadcast failed for %s (%r); broadcasts failing: watchers will catch up from the database",
                        about,
                        exc,
                    )
                self._failed += 1
                continue
            finally:
                self._queue.task_done()
            if self._failed or self._dropped:
                logger.warning(
                    "broadcasts flowing again after %d failed and %d dropped sends", self._failed, self._dropped
                )
                self._failed = self._dropped = 0
