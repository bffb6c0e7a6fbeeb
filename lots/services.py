"""Lot lifecycle: create, edit, open, close, cancel, watch.

Every writer of a lot takes its row lock through `lock_lot`, the same lock
the bid service takes, so a close and a bid never interleave.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from accounts.services import ensure_session_open
from lots.events import Outbox, flush_outboxes, lot_result, notify_user
from lots.exceptions import LotActionRefused, NotLotManager
from lots.models import Auction, Lot, LotStatus, Registration, RegistrationStatus, Watch
from lots.pricing import currencies, currency_places, parse_money
from lots.selectors import get_aliases, is_lot_visible, visible_to
from lots.wakeups import wake_clocks
from ops.exceptions import InvalidInput, NotFound

PRICE_FIELDS = ("currency", "starting_price", "reserve_price", "buy_now_price", "bid_increment")
ENDED = (LotStatus.CLOSED, LotStatus.CANCELLED)


def locked_lots():
    """Lots with their rows locked; related rows are read after the lock, not joined.

    A locker that waited gets the lot row as committed by the holder, but
    PostgreSQL keeps the joined rows it first saw: a joined `high_bidder`
    would be the old leader, or none.
    """
    return Lot.objects.select_for_update(of=("self",))


def lock_lot(lot_id: int, *, viewer=None) -> Lot:
    """The lot, its row locked until the transaction ends. Raises `lot_not_found`.

    With a `viewer` (a user or anonymous), a lot they may not see is
    `lot_not_found` too (`selectors.visible_to`); None is the system (the clock).
    """
    lots = locked_lots() if viewer is None else locked_lots().filter(visible_to(viewer))
    try:
        return lots.get(pk=lot_id)
    except (Lot.DoesNotExist, ValueError, TypeError):
        raise NotFound("lot_not_found", "No such lot.") from None


def ensure_can_manage(*, lot: Lot, actor) -> None:
    """Only the seller or staff manage a lot; `actor=None` is the system clock."""
    if actor is not None and not (actor.is_staff or actor.pk == lot.seller_id):
        raise NotLotManager("not_lot_manager", "Only the seller or staff can manage this lot.")


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
    currency = (currency or settings.AUCTION_DEFAULT_CURRENCY).upper()
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
        outbox.lot_event("LOT_UPDATED", lot=lot_public_times(lot), **({"reason": reason.strip()} if before else {}))
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
    return _open(lot=lot, now=now, wake=True)


def _open(*, lot: Lot, now: datetime, wake: bool = False) -> Lot:
    """Open a locked lot. A lot opened on time by a clock (or a reader) changes no clock's schedule."""
    lot.status = LotStatus.OPEN
    lot.starts_at = min(lot.starts_at, now)
    outbox = Outbox(lot, times_changed=wake)
    outbox.lot_event("LOT_OPENED", lot=lot_public_times(lot))
    lot.save(update_fields=["status", "starts_at", "seq", "updated_at"])
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
    outbox.lot_event("AUCTION_ENDED", lot=lot_result(lot, winner_alias=winner_alias))
    lot.save(update_fields=["status", "closed_at", "winner", "final_price", "seq", "updated_at"])
    notice = {"lot_id": lot.id, "title": lot.title, "currency": lot.currency, "final_price": lot.final_price}
    if lot.winner_id:
        outbox.notify(lot.winner_id, "WON", **notice)
        outbox.notify(lot.seller_id, "LOT_SOLD", **notice, winner=lot.winner.username)
    else:
        outbox.notify(lot.seller_id, "LOT_UNSOLD", **notice, reserve_met=lot.reserve_met, bid_count=lot.bid_count)


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


# --- The clock: each call claims due lots no other clock holds, so any number of clocks share the work.

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
        _open(lot=lot, now=now)
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
            "ENDING_SOON",
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


@transaction.atomic
def _settle(lot_id: int, now: datetime, status: str, due_field: str) -> bool:
    lot = lock_lot(lot_id)
    if lot.status != status or getattr(lot, due_field) > now:
        return False
    _open_or_close_due(lot=lot, now=now)
    return True


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
            outbox.lot_event("LOT_UPDATED", lot=lot_public_times(lot))
        lot.save(update_fields=["ends_at", "hard_ends_at", "ending_soon_sent_at", "seq", "updated_at"])
        outbox.flush()
    auction.stagger_seconds = interval_seconds
    auction.save(update_fields=["stagger_seconds"])
    return lots


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
    outbox.lot_event("AUCTION_ENDED", lot=lot_result(lot, winner_alias=None))
    if lot.high_bidder_id:
        outbox.notify(lot.high_bidder_id, "LOT_CANCELLED", lot_id=lot.id, title=lot.title)
    lot.save(update_fields=["status", "closed_at", "seq", "updated_at"])
    outbox.flush()
    return lot


def watch_lot(*, lot_id: int, user) -> None:
    """Add a lot to the user's watchlist (idempotent, whatever watches and unwatches run beside it).

    Raises `lot_not_found`, for a lot the user may not see too.
    """
    if not is_lot_visible(lot_id=lot_id, user=user):
        raise NotFound("lot_not_found", "No such lot.")
    # get_or_create's fallback read found nothing when an unwatch deleted the
    # row between its insert and its read (a 500): an insert that skips an
    # existing row has no such window.
    try:
        with transaction.atomic():
            if not Lot.objects.filter(pk=lot_id).exists():
                raise NotFound("lot_not_found", "No such lot.")
            Watch.objects.bulk_create([Watch(user=user, lot_id=lot_id)], ignore_conflicts=True)
    except IntegrityError as exc:  # The lot was deleted meanwhile.
        raise NotFound("lot_not_found", "No such lot.") from exc


def unwatch_lot(*, lot_id: int, user) -> None:
    """Take a lot off the user's watchlist (idempotent). Raises `lot_not_found`."""
    if not is_lot_visible(lot_id=lot_id, user=user):
        raise NotFound("lot_not_found", "No such lot.")
    Watch.objects.filter(user=user, lot_id=lot_id).delete()


# --- Registration to bid in a sale -------------------------------------------


@transaction.atomic
def register_for_auction(*, auction_id: int, user) -> Registration:
    """Register to bid in a sale, with the next paddle number. Locks the sale's row.

    A second call returns the existing registration. Raises `auction_not_found`.
    """
    auction = Auction.objects.select_for_update().filter(pk=auction_id).first()
    if auction is None:
        raise NotFound("auction_not_found", "No such sale.")
    existing = Registration.objects.filter(auction=auction, user=user).first()
    if existing is not None:
        return existing
    last_paddle = auction.registrations.aggregate(last=Max("paddle_number"))["last"] or 0
    approved = auction.auto_approve or not auction.requires_registration
    return Registration.objects.create(
        auction=auction,
        user=user,
        paddle_number=last_paddle + 1,
        status=RegistrationStatus.APPROVED if approved else RegistrationStatus.PENDING,
        decided_at=timezone.now() if approved else None,
    )


REGISTRATION_DECISIONS = {
    "approve": (
        RegistrationStatus.APPROVED,
        {RegistrationStatus.PENDING, RegistrationStatus.REJECTED, RegistrationStatus.REVOKED},
    ),
    "reject": (RegistrationStatus.REJECTED, {RegistrationStatus.PENDING}),
    "revoke": (RegistrationStatus.REVOKED, {RegistrationStatus.APPROVED}),
}


@transaction.atomic
def decide_registration(*, registration_id: int, actor, decision: str) -> Registration:
    """Staff approve, reject or revoke a registration. Bids already placed stay valid.

    Raises `not_staff`, `registration_not_found`, `invalid_transition`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff decide registrations.")
    registration = Registration.objects.select_for_update().filter(pk=registration_id).first()
    if registration is None:
        raise NotFound("registration_not_found", "No such registration.")
    new_status, allowed_from = REGISTRATION_DECISIONS[decision]
    if registration.status not in allowed_from:
        raise LotActionRefused("invalid_transition", f"A {registration.status} registration cannot be {new_status}.")
    registration.status = new_status
    registration.decided_at = timezone.now()
    registration.decided_by = actor
    registration.save(update_fields=["status", "decided_at", "decided_by"])
    auction = registration.auction
    notify_user(
        registration.user_id,
        "REGISTRATION_DECIDED",
        auction=auction.slug,
        title=auction.title,
        status=new_status,
        paddle_number=registration.paddle_number,
    )
    return registration
