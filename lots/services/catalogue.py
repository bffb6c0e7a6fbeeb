"""Creating, editing and deleting lots, and staggering a sale's ends: the seller's and staff's writes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from lots.events import EventType, Outbox
from lots.exceptions import LotActionRefused, NotLotManager
from lots.models import Auction, Lot, LotStatus
from lots.pricing import currencies, currency_places, default_currency, parse_money
from lots.services.locks import ENDED, ensure_can_manage, lock_lot, locked_lots
from lots.wakeups import wake_clocks
from ops.exceptions import InvalidInput

PRICE_FIELDS = ("currency", "starting_price", "reserve_price", "buy_now_price", "bid_increment")


def _validate_money(data: dict[str, Any], currency: str) -> dict[str, Any]:
    places = currency_places(currency)
    cleaned = {}
    for field in ("starting_price", "reserve_price", "buy_now_price", "bid_increment"):
        if field in data:
            value = data[field]
            cleaned[field] = None if value is None else parse_money(value, field=field, places=places)
    return cleaned


def _later(moment: datetime, delta: timedelta, *, field: str) -> datetime:
    """`moment + delta`, or `invalid_schedule` when that passes the year 9999."""
    try:
        return moment + delta
    except OverflowError:
        raise InvalidInput("invalid_schedule", "That time is too far in the future.", field=field) from None


def _check_lot_rules(lot: Lot) -> None:
    """The invariants of a lot's prices and times, with clear codes."""
    if lot.currency not in currencies():
        raise InvalidInput("invalid_currency", f"Unsupported currency {lot.currency!r}.", field="currency")
    if lot.reserve_price is not None and lot.reserve_price < lot.starting_price:
        raise InvalidInput("invalid_price", "The reserve cannot be below the starting price.", field="reserve_price")
    if lot.buy_now_price is not None:
        if lot.buy_now_price <= lot.starting_price:
            raise InvalidInput("invalid_price", "Buy now must be above the starting price.", field="buy_now_price")
        if lot.reserve_price is not None and lot.buy_now_price < lot.reserve_price:
            raise InvalidInput("invalid_price", "Buy now cannot be below the reserve.", field="buy_now_price")
    if lot.ends_at <= lot.starts_at:
        raise InvalidInput("invalid_schedule", "The lot must end after it starts.", field="ends_at")
    if lot.hard_ends_at < lot.ends_at:
        raise InvalidInput("invalid_schedule", "The hard end cannot be before the end.", field="hard_ends_at")


@transaction.atomic
def create_lot(
    *,
    seller,
    title: str,
    starting_price: object,
    ends_at: datetime,
    description: str = "",
    currency: str | None = None,
    reserve_price: object | None = None,
    buy_now_price: object | None = None,
    bid_increment: object | None = None,
    starts_at: datetime | None = None,
    hard_ends_at: datetime | None = None,
    soft_close_seconds: int = 0,
    auction: Auction | None = None,
    lot_number: int | None = None,
    image=None,
    draft: bool = False,
    actor=None,
    now: datetime | None = None,
) -> Lot:
    """Create a lot: a draft, scheduled for `starts_at`, or open now. `actor`: who asks (None: the system).

    Raises `not_staff`, `invalid_amount`, `invalid_price`, `invalid_currency`, `invalid_schedule`.
    """
    if auction is not None and actor is not None and not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff add lots to a sale.")
    now = now or timezone.now()
    currency = (currency or default_currency()).upper()
    money = _validate_money(
        {
            "starting_price": starting_price,
            "reserve_price": reserve_price,
            "buy_now_price": buy_now_price,
            "bid_increment": bid_increment,
        },
        currency,
    )
    opens_now = not draft and (starts_at is None or starts_at <= now)
    starts_at = now if starts_at is None or opens_now else starts_at
    if ends_at <= now:
        raise InvalidInput("invalid_schedule", "The lot must end in the future.", field="ends_at")
    lot = Lot(
        seller=seller,
        title=title,
        description=description,
        currency=currency,
        **money,
        starts_at=starts_at,
        ends_at=ends_at,
        hard_ends_at=hard_ends_at or _later(ends_at, settings.AUCTION_DEFAULT_MAX_EXTENSION, field="ends_at"),
        soft_close_seconds=soft_close_seconds,
        auction=auction,
        lot_number=lot_number,
        status=LotStatus.DRAFT if draft else LotStatus.OPEN if opens_now else LotStatus.SCHEDULED,
    )
    if image:
        lot.image = image
    _check_lot_rules(lot)
    lot.save()
    if not draft:
        wake_clocks()
    return lot


def _ensure_can_move_between_sales(*, lot: Lot, actor, auction: Auction | None) -> None:
    """Only staff put a lot into a sale or take it out, and never once it has bids: the sale's rules
    (registration) are part of what its bidders bid under. Raises `not_staff`, `lot_has_bids`."""
    if (auction.pk if auction is not None else None) == lot.auction_id:
        return
    if actor is not None and not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff move a lot into or out of a sale.")
    if lot.bid_count:
        raise LotActionRefused("lot_has_bids", "A lot cannot change sale once bidding has started.")


def _ends_moved_earlier(lot: Lot, changes: dict[str, Any]) -> list[str]:
    return [field for field in ("ends_at", "hard_ends_at") if field in changes and changes[field] < getattr(lot, field)]


def _ensure_end_may_move_earlier(*, lot: Lot, actor, reason: str) -> None:
    """Once bidding started, the end moves earlier only by staff, with a reason. Raises `lot_has_bids`,
    `reason_required`."""
    if actor is not None and not actor.is_staff:
        raise LotActionRefused("lot_has_bids", "Once bidding has started the lot's end can only move later.")
    if not reason.strip():
        raise InvalidInput("reason_required", "Say why the end moves earlier after bids.", field="reason")


def _record_shortening(*, lot: Lot, actor, before: dict[str, datetime], reason: str) -> None:
    """The audit record of an end moved earlier after bids: an admin log entry on the lot (who, from, to, why)."""
    if actor is None:
        return
    moves = "; ".join(f"{field} {before[field].isoformat()} -> {getattr(lot, field).isoformat()}" for field in before)
    LogEntry.objects.create(
        user_id=actor.pk,
        content_type=ContentType.objects.get_for_model(Lot),
        object_id=str(lot.pk),
        object_repr=str(lot)[:200],
        action_flag=CHANGE,
        change_message=f"Moved earlier after {lot.bid_count} bid(s): {moves}. Reason: {reason.strip()}",
    )


@transaction.atomic
def update_lot(*, lot_id: int, actor, changes: dict[str, Any], reason: str = "", now: datetime | None = None) -> Lot:
    """Edit a lot. Price rules and its sale are frozen once bidding started, and its end only moves
    later (earlier: staff, with a `reason`, recorded). Locks the lot row.

    Raises `lot_not_found`, `not_lot_manager`, `not_staff`, `lot_closed`, `lot_has_bids`,
    `reason_required`, `invalid_*`.
    """
    lot = lock_lot(lot_id, viewer=actor)
    ensure_can_manage(lot=lot, actor=actor)
    if lot.status in ENDED:
        raise LotActionRefused("lot_closed", "An ended lot cannot be edited.")
    if "auction" in changes:
        _ensure_can_move_between_sales(lot=lot, actor=actor, auction=changes["auction"])
    if lot.bid_count and any(field in changes for field in PRICE_FIELDS):
        raise LotActionRefused("lot_has_bids", "Prices cannot change once bidding has started.")
    if lot.status == LotStatus.OPEN and "starts_at" in changes:
        raise LotActionRefused("lot_open", "An open lot's start cannot change.")
    shortened = _ends_moved_earlier(lot, changes) if lot.bid_count else []
    if shortened:
        _ensure_end_may_move_earlier(lot=lot, actor=actor, reason=reason)
    before = {field: getattr(lot, field) for field in shortened}
    currency = str(changes.get("currency", lot.currency)).upper()
    money = _validate_money(changes, currency)
    for field, value in {**changes, **money, "currency": currency}.items():
        setattr(lot, field, value)
    if "ends_at" in changes and "hard_ends_at" not in changes and lot.hard_ends_at < lot.ends_at:
        lot.hard_ends_at = _later(lot.ends_at, settings.AUCTION_DEFAULT_MAX_EXTENSION, field="ends_at")
    if lot.status == LotStatus.OPEN and lot.ends_at <= (now or timezone.now()):
        raise InvalidInput("invalid_schedule", "An open lot must end in the future.", field="ends_at")
    _check_lot_rules(lot)
    outbox = Outbox(lot, times_changed=bool({"starts_at", "ends_at"} & changes.keys()))
    if lot.status == LotStatus.OPEN:
        # Bidders see why their lot ends sooner.
        outbox.lot_event(
            EventType.LOT_UPDATED, lot=lot_public_times(lot), **({"reason": reason.strip()} if before else {})
        )
    lot.save()
    if before:
        _record_shortening(lot=lot, actor=actor, before=before, reason=reason)
    outbox.flush()
    return lot


def lot_public_times(lot: Lot) -> dict[str, Any]:
    return {"status": lot.status, "starts_at": lot.starts_at, "ends_at": lot.ends_at, "title": lot.title}


@transaction.atomic
def delete_lot(*, lot_id: int, actor) -> None:
    """Delete a lot nobody has bid on. Raises `not_lot_manager`, `lot_has_bids`."""
    lot = lock_lot(lot_id, viewer=actor)
    ensure_can_manage(lot=lot, actor=actor)
    if lot.bid_count or lot.bids.exists():
        raise LotActionRefused("lot_has_bids", "A lot with bids cannot be deleted; cancel it instead.")
    lot.delete()


@transaction.atomic
def stagger_auction_lots(
    *, auction: Auction, actor, first_ends_at: datetime, interval_seconds: int, now: datetime | None = None
) -> list[Lot]:
    """End the sale's unfinished lots one after another, in catalogue order. Locks them in id order.

    Raises `not_staff`, `invalid_schedule`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff can schedule a sale.")
    now = now or timezone.now()
    if first_ends_at <= now or interval_seconds < 0:
        raise InvalidInput("invalid_schedule", "The first lot must end in the future, at a non-negative interval.")
    lots = list(locked_lots().filter(auction=auction).exclude(status__in=ENDED).order_by("pk"))
    lots.sort(key=lambda lot: (lot.lot_number is None, lot.lot_number or 0, lot.pk))
    for position, lot in enumerate(lots):
        # Each lot keeps the soft-close allowance it had past its end.
        allowance = lot.hard_ends_at - lot.ends_at
        new_end = _later(first_ends_at, timezone.timedelta(seconds=interval_seconds * position), field="first_ends_at")
        if new_end > lot.ends_at:
            lot.ending_soon_sent_at = None  # Its watchers are warned again before the new end.
        lot.ends_at, lot.hard_ends_at = new_end, _later(new_end, allowance, field="first_ends_at")
        if lot.ends_at <= lot.starts_at:
            raise InvalidInput("invalid_schedule", f"Lot {lot.pk} would end before it starts.")
        outbox = Outbox(lot, times_changed=True)
        if lot.status == LotStatus.OPEN:
            outbox.lot_event(EventType.LOT_UPDATED, lot=lot_public_times(lot))
        outbox.save_lot("ends_at", "hard_ends_at", "ending_soon_sent_at")
        outbox.flush()
    auction.stagger_seconds = interval_seconds
    auction.save(update_fields=["stagger_seconds"])
    return lots
