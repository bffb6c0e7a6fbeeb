"""The clock's work: each call claims due lots no other clock holds, so any number of clocks share it.

A reader settles a lot it finds past its time (`settle_lot_if_due`), so it shows the final state while every clock is down.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lots.events import EventType, Outbox, flush_outboxes
from lots.models import Lot, LotStatus
from lots.selectors import get_lot, list_visible_lots
from lots.services.lifecycle import finish_lot, open_locked
from lots.services.locks import lock_lot, locked_lots

# Lots closed per transaction: one query claims them all, so that hundreds of
# lots ending in the same second are all closed within it.
CLOSE_BATCH = 25


def _claim_due(due_field: str, *, limit: int = 1, **filters) -> list[Lot]:
    """The earliest-due matching lots whose rows no other clock holds, locked."""
    return list(
        locked_lots()
        .select_for_update(of=("self",), skip_locked=True)
        .filter(**filters)
        .order_by(due_field, "id")[:limit]
    )


def _claim_next(due_field: str, **filters) -> Lot | None:
    """The earliest-due matching lot whose row no other clock holds, locked."""
    claimed = _claim_due(due_field, **filters)
    return claimed[0] if claimed else None


def _open_or_close_due(*, lot: Lot, now: datetime) -> None:
    """Bring a locked lot whose time has come up to date: open it, or close it if its end passed too."""
    if lot.status == LotStatus.SCHEDULED and lot.ends_at > now:
        open_locked(lot=lot, now=now)
        return
    # Ended, or fell due to open and to close while no clock ran: it closes
    # (unsold if it never opened), so nobody may bid on it after its end.
    lot.status = LotStatus.OPEN
    outbox = Outbox(lot)
    finish_lot(lot=lot, outbox=outbox, now=now)
    outbox.flush()


@transaction.atomic
def open_next_due_lot(*, now: datetime) -> Lot | None:
    """Open the next scheduled lot whose start has come; None when none is due."""
    lot = _claim_next("starts_at", status=LotStatus.SCHEDULED, starts_at__lte=now)
    if lot is not None:
        _open_or_close_due(lot=lot, now=now)
    return lot


@transaction.atomic
def close_due_lots(*, now: datetime | None = None, limit: int = CLOSE_BATCH) -> list[Lot]:
    """Close up to `limit` open lots whose end has passed, each exactly once; [] when none is due.

    They are stamped closed once their rows are locked, so after every bid they accepted.
    """
    lots = _claim_due("ends_at", limit=limit, status=LotStatus.OPEN, ends_at__lte=now or timezone.now())
    closed_at = now or timezone.now()
    outboxes = []
    for lot in lots:
        outbox = Outbox(lot)
        finish_lot(lot=lot, outbox=outbox, now=closed_at)
        outboxes.append(outbox)
    flush_outboxes(outboxes)
    return lots


@transaction.atomic
def announce_next_ending_soon(*, now: datetime) -> Lot | None:
    """Tell the watchers of the next lot entering its last minutes, once; None when none is due."""
    lead = timezone.timedelta(seconds=settings.AUCTION_ENDING_SOON_SECONDS)
    lot = _claim_next(
        "ends_at", status=LotStatus.OPEN, ending_soon_sent_at__isnull=True, ends_at__lte=now + lead, ends_at__gt=now
    )
    if lot is None:
        return None
    lot.ending_soon_sent_at = now
    lot.save(update_fields=["ending_soon_sent_at"])
    outbox = Outbox(lot)
    for user_id in lot.watches.values_list("user_id", flat=True):
        outbox.notify(
            user_id,
            EventType.ENDING_SOON,
            lot_id=lot.id,
            title=lot.title,
            ends_at=lot.ends_at,
            currency=lot.currency,
            current_price=lot.current_price,
        )
    outbox.flush()
    return lot


def settle_lot_if_due(*, lot: Lot, now: datetime | None = None) -> bool:
    """Open or close one lot whose time has come, if no clock did yet; True if it changed.

    Readers call it so that a lot read after its end shows its final state
    even while every clock is down.
    """
    now = now or timezone.now()
    if lot.status == LotStatus.OPEN and lot.ends_at <= now:
        return _settle(lot.pk, now, LotStatus.OPEN, "ends_at")
    if lot.status == LotStatus.SCHEDULED and lot.starts_at <= now:
        return _settle(lot.pk, now, LotStatus.SCHEDULED, "starts_at")
    return False


def visible_lot_settled(*, lot_id: int, user) -> Lot | None:
    """The lot as `user` may see it (None: not found for them), settled first if its start or end passed
    before any clock acted: REST and the lot's room both read a lot this way."""
    lot = list_visible_lots(user=user).filter(pk=lot_id).first()
    if lot is not None and settle_lot_if_due(lot=lot):
        lot = get_lot(lot_id=lot_id)
    return lot


@transaction.atomic
def _settle(lot_id: int, now: datetime, status: str, due_field: str) -> bool:
    lot = lock_lot(lot_id)
    if lot.status != status or getattr(lot, due_field) > now:
        return False
    _open_or_close_due(lot=lot, now=now)
    return True
