"""Opening, closing and cancelling a lot, by its seller, staff or the clock, each under the lot's lock."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.services import ensure_session_open
from lots.events import EventType, Outbox, lot_result
from lots.exceptions import LotActionRefused
from lots.models import Lot, LotStatus
from lots.selectors import get_aliases
from lots.services.catalogue import lot_public_times
from lots.services.locks import ENDED, ensure_can_manage, lock_lot
from ops.exceptions import InvalidInput


@transaction.atomic
def open_lot(*, lot_id: int, actor, now: datetime | None = None) -> Lot:
    """Open a draft or scheduled lot now. Raises `not_lot_manager`, `lot_open`, `lot_closed`, `invalid_schedule`."""
    lot = lock_lot(lot_id, viewer=actor)
    ensure_can_manage(lot=lot, actor=actor)
    now = now or timezone.now()
    if lot.status == LotStatus.OPEN:
        raise LotActionRefused("lot_open", "The lot is already open.")
    if lot.status in ENDED:
        raise LotActionRefused("lot_closed", "The lot has ended.")
    if lot.ends_at <= now:
        raise InvalidInput("invalid_schedule", "The lot's end has passed; move it first.", field="ends_at")
    # A draft's end was in no clock's schedule: wake them for it.
    return open_locked(lot=lot, now=now, wake=True)


def open_locked(*, lot: Lot, now: datetime, wake: bool = False) -> Lot:
    """Open a locked lot. A lot opened on time by a clock (or a reader) changes no clock's schedule."""
    lot.status = LotStatus.OPEN
    lot.starts_at = min(lot.starts_at, now)
    outbox = Outbox(lot, times_changed=wake)
    outbox.lot_event(EventType.LOT_OPENED, lot=lot_public_times(lot))
    outbox.save_lot("status", "starts_at")
    outbox.flush()
    return lot


def finish_lot(*, lot: Lot, outbox: Outbox, now: datetime) -> None:
    """Close a locked, open lot: the leader wins if the reserve is met."""
    lot.status = LotStatus.CLOSED
    lot.closed_at = now
    if lot.bid_count and lot.reserve_met:
        lot.winner = lot.high_bidder
        lot.final_price = lot.current_price
    winner_alias = get_aliases(lot_id=lot.pk, user_ids=[lot.winner_id]).get(lot.winner_id) if lot.winner_id else None
    outbox.lot_event(EventType.AUCTION_ENDED, lot=lot_result(lot, winner_alias=winner_alias))
    outbox.save_lot("status", "closed_at", "winner", "final_price")
    notice = {"lot_id": lot.id, "title": lot.title, "currency": lot.currency, "final_price": lot.final_price}
    if lot.winner_id:
        outbox.notify(lot.winner_id, EventType.WON, **notice)
        outbox.notify(lot.seller_id, EventType.LOT_SOLD, **notice, winner=lot.winner.username)
    else:
        outbox.notify(
            lot.seller_id, EventType.LOT_UNSOLD, **notice, reserve_met=lot.reserve_met, bid_count=lot.bid_count
        )


@transaction.atomic
def close_lot(*, lot_id: int, actor, now: datetime | None = None) -> Lot:
    """Close an open lot now, deciding the winner, exactly once. Locks the lot row.

    Raises `not_lot_manager`, `lot_not_open`, `lot_closed`, `account_inactive`, `session_ended`.
    """
    lot = lock_lot(lot_id, viewer=actor)
    ensure_can_manage(lot=lot, actor=actor)
    if actor is not None:  # None: the system (the clock).
        ensure_session_open(user=actor)
    if lot.status in ENDED:
        raise LotActionRefused("lot_closed", "The lot has already ended.")
    if lot.status != LotStatus.OPEN:
        raise LotActionRefused("lot_not_open", "Only an open lot can be closed; cancel it instead.")
    outbox = Outbox(lot)
    finish_lot(lot=lot, outbox=outbox, now=now or timezone.now())
    outbox.flush()
    return lot


@transaction.atomic
def cancel_lot(*, lot_id: int, actor, now: datetime | None = None) -> Lot:
    """End a lot with no winner. Locks the lot row. Raises `not_lot_manager`, `lot_closed`."""
    lot = lock_lot(lot_id, viewer=actor)
    ensure_can_manage(lot=lot, actor=actor)
    if lot.status in ENDED:
        raise LotActionRefused("lot_closed", "The lot has already ended.")
    lot.status = LotStatus.CANCELLED
    lot.closed_at = now or timezone.now()
    outbox = Outbox(lot)
    outbox.lot_event(EventType.AUCTION_ENDED, lot=lot_result(lot, winner_alias=None))
    if lot.high_bidder_id:
        outbox.notify(lot.high_bidder_id, EventType.LOT_CANCELLED, lot_id=lot.id, title=lot.title)
    outbox.save_lot("status", "closed_at")
    outbox.flush()
    return lot
