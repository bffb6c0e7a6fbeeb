"""Group names and event payloads: the one place that speaks to the channel layer.

A service collects its events in an `Outbox` while it holds the lot's lock;
`Outbox.flush` stores the lot's events (numbered by `seq`) in the same
transaction and queues the broadcast for after the commit, so nothing is
sent for a transaction that rolled back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from auction_site.metrics import BROADCAST_SECONDS, timed
from bids.models import LotEvent, Notification
from bids.rules import currency_places, min_next_bid

if TYPE_CHECKING:
    from lots.models import Lot

logger = logging.getLogger(__name__)


def lot_group(lot_id: int) -> str:
    return f"lot.{lot_id}"


def auction_group(slug: str) -> str:
    return f"auction.{slug}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


# Every clock process listens here; a message wakes it before its next due time.
CLOCK_GROUP = "auction.clock"


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
    (`lots.services.name_bidders`), never by username: one frame serves every watcher."""
    return {
        "current_price": lot.current_price,
        "min_next_bid": lot_min_next_bid(lot),
        "bid_count": lot.bid_count,
        "high_bidder": high_bidder_alias,
        "reserve_met": lot.reserve_met,
        "ends_at": lot.ends_at,
    }


def bid_payload(bid, *, bidder_alias: str) -> dict[str, Any]:
    return {
        "id": bid.id,
        "amount": bid.amount,
        "bidder": bidder_alias,
        "created_at": bid.created_at,
        "is_proxy": bid.is_proxy,
    }


def chat_payload(message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "user": message.user.username,
        "text": message.text,
        "is_seller": message.is_seller,
        "created_at": message.created_at,
    }


def broadcast_chat(lot_id: int, text: str) -> None:
    """Chat frames go to the room without a `seq`: they are not lot state."""
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(lot_group(lot_id), {"type": "lot.chat", "text": text})
    except Exception:
        logger.exception("chat broadcast failed for lot %s", lot_id)


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
    # The lot's times moved: clocks recompute when they next have work.
    times_changed: bool = False

    def lot_event(self, event_type: str, **payload: Any) -> None:
        """A public change: takes the lot's next `seq`."""
        self.lot.seq += 1
        text = dumps({"type": event_type, "lot_id": self.lot.id, "seq": self.lot.seq, **payload})
        self.events.append(LotEvent(lot=self.lot, seq=self.lot.seq, type=event_type, text=text))

    def notify(self, user_id: int, event_type: str, **payload: Any) -> None:
        """A private event for one user: stored, pushed to their socket, e-mailed by the mailer."""
        self.notifications.append(Notification(user_id=user_id, lot=self.lot, type=event_type, payload=payload))

    def flush(self) -> None:
        """Store the events and notifications now; broadcast them after commit."""
        if self.events:
            LotEvent.objects.bulk_create(self.events)
        if self.notifications:
            Notification.objects.bulk_create(self.notifications)
        if not (self.events or self.notifications or self.times_changed):
            return
        auction_slug = self.lot.auction.slug if self.lot.auction_id else None
        messages = [(e.seq, e.text) for e in self.events]
        private = [(n.user_id, notification_text(n)) for n in self.notifications]
        # New notifications wake the clock too: its mailer sends their e-mails.
        wake = self.times_changed or bool(self.notifications)
        lot_id = self.lot.id
        transaction.on_commit(lambda: broadcast(lot_id, auction_slug, messages, private, wake_clock=wake))


def flush_outboxes(outboxes: list[Outbox], *, mailed_by_caller: bool = False) -> None:
    """`Outbox.flush` for several lots at once: one insert per table, one broadcast after commit.

    `mailed_by_caller`: the caller (the clock) e-mails the notifications at the
    end of its round, so no clock is woken for them.
    """
    LotEvent.objects.bulk_create([event for outbox in outboxes for event in outbox.events])
    Notification.objects.bulk_create([n for outbox in outboxes for n in outbox.notifications])
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
    wake = any(outbox.times_changed or (outbox.notifications and not mailed_by_caller) for outbox in outboxes)
    if sends or wake:
        transaction.on_commit(lambda: broadcast_many(sends, wake_clock=wake))


def notification_text(notification: Notification) -> str:
    return dumps(
        {
            "type": notification.type,
            "id": notification.id,
            "created_at": notification.created_at,
            **notification.payload,
        }
    )


def broadcast(
    lot_id: int | None,
    auction_slug: str | None,
    events: list[tuple[int, str]],
    notifications: list[tuple[int, str]],
    *,
    wake_clock: bool = False,
) -> None:
    """Send committed events to the lot's room, its sale's room and users."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_send_all)(layer, lot_id, auction_slug, events, notifications, wake_clock)
    except Exception:
        # The change is committed and stored; watchers that miss it catch up
        # from the stored events when they notice the gap in `seq`.
        logger.exception("broadcast failed for lot %s", lot_id)


def broadcast_many(
    sends: list[tuple[int, str | None, list[tuple[int, str]], list[tuple[int, str]]]], *, wake_clock: bool = False
) -> None:
    """`broadcast` for several lots, each as (lot_id, auction_slug, events, notifications), in one go."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_send_many)(layer, sends, wake_clock)
    except Exception:
        logger.exception("broadcast failed for lots %s", [send[0] for send in sends])


def notify_user(user_id: int, event_type: str, **payload: Any) -> None:
    """A private event outside any lot: stored now, pushed after commit; the woken clock e-mails it."""
    notification = Notification.objects.create(user_id=user_id, type=event_type, payload=payload)
    text = notification_text(notification)
    transaction.on_commit(lambda: broadcast(None, None, [], [(user_id, text)], wake_clock=True))


def wake_clocks() -> None:
    """After commit: tell every clock that lot times changed."""
    broadcast(None, None, [], [], wake_clock=True)


@timed(BROADCAST_SECONDS)
async def _send_all(layer, lot_id, auction_slug, events, notifications, wake_clock) -> None:
    for seq, text in events:
        message = {"type": "lot.event", "lot_id": lot_id, "seq": seq, "text": text}
        await layer.group_send(lot_group(lot_id), message)
        if auction_slug:
            await layer.group_send(auction_group(auction_slug), message)
    for user_id, text in notifications:
        await layer.group_send(user_group(user_id), {"type": "user.event", "text": text})
    if wake_clock:
        await layer.group_send(CLOCK_GROUP, {"type": "clock.wake"})


async def _send_many(layer, sends, wake_clock) -> None:
    for lot_id, auction_slug, events, notifications in sends:
        await _send_all(layer, lot_id, auction_slug, events, notifications, False)
    if wake_clock:
        await layer.group_send(CLOCK_GROUP, {"type": "clock.wake"})
