"""Bidding: every rule of placing a bid and buying now, under the lot's row lock.

A bid is one short transaction: lock the lot, check, insert the bid rows,
update the lot, store its events, commit; the events are broadcast after
the commit. Every writer of a lot takes the same lock (`lock_lot`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from auction_site.exceptions import InvalidInput, NotFound, RateLimited
from auction_site.metrics import count_bids
from bids.events import Outbox, bid_payload, broadcast_chat, chat_payload, dumps, lot_min_next_bid, lot_price_state
from bids.exceptions import BidRejected, InvalidBid
from bids.models import Bid, ChatMessage
from bids.rules import currency_places, increment_for, parse_money
from lots.models import Lot, LotStatus, Registration, RegistrationStatus
from lots.services import ensure_can_manage, finish_lot, lock_lot


@dataclass(frozen=True)
class BidOutcome:
    bid: Bid
    lot: Lot
    leading: bool
    replayed: bool = False


@dataclass(frozen=True)
class PlannedBid:
    """A bid row to insert, and who leads once it stands."""

    bid: Bid
    leader: object


def _request_hash(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _replay(*, lot: Lot, bidder, idempotency_key: str, request_hash: str) -> BidOutcome | None:
    """The first outcome for a retried key, None for a new key.

    Raises `idempotency_conflict` when the key came with another request.
    """
    earlier = Bid.objects.filter(bidder=bidder, idempotency_key=idempotency_key).first()
    if earlier is None:
        return None
    if earlier.request_hash != request_hash:
        raise BidRejected("idempotency_conflict", "This idempotency key was already used for a different request.")
    return BidOutcome(bid=earlier, lot=lot, leading=lot.high_bidder_id == bidder.pk, replayed=True)


def ensure_can_bid(*, lot: Lot, bidder, now: datetime) -> None:
    """Raises `lot_not_open`, `lot_closed`, `own_lot`, `staff_cannot_bid`, `not_registered`,
    `registration_pending`."""
    if lot.status in (LotStatus.CLOSED, LotStatus.CANCELLED):
        raise BidRejected("lot_closed", "Bidding on this lot has ended.")
    if lot.status != LotStatus.OPEN:
        raise BidRejected("lot_not_open", "This lot is not open for bidding yet.")
    if now >= lot.ends_at:
        # The clock may not have closed it yet; the end time decides.
        raise BidRejected("lot_closed", "Bidding on this lot has ended.")
    if lot.seller_id == bidder.pk:
        raise BidRejected("own_lot", "You cannot bid on your own lot.")
    if bidder.is_staff and not settings.AUCTION_STAFF_CAN_BID:
        raise BidRejected("staff_cannot_bid", "Staff accounts may not bid.")
    if lot.auction_id and lot.auction.requires_registration:
        _ensure_approved(auction_id=lot.auction_id, bidder=bidder)


def _ensure_approved(*, auction_id: int, bidder) -> None:
    """Raises `not_registered` (none, rejected or revoked) or `registration_pending`."""
    status = Registration.objects.filter(auction_id=auction_id, user=bidder).values_list("status", flat=True).first()
    if status == RegistrationStatus.APPROVED:
        return
    if status == RegistrationStatus.PENDING:
        raise BidRejected("registration_pending", "Your registration for this sale awaits approval.")
    if status is None:
        raise BidRejected("not_registered", "Register for this sale before bidding.")
    raise BidRejected("not_registered", f"Your registration for this sale was {status}.")


def _with_reserve(lot: Lot, price: Decimal, ceiling: Decimal) -> Decimal:
    """The price jumps to the reserve as soon as a maximum meets it."""
    if lot.reserve_price is not None and price < lot.reserve_price <= ceiling:
        return lot.reserve_price
    return price


def _soft_close_end(lot: Lot, now: datetime) -> datetime | None:
    """The new end if a public change now falls in the soft-close window."""
    if not lot.soft_close_seconds:
        return None
    window = timezone.timedelta(seconds=lot.soft_close_seconds)
    new_end = min(now + window, lot.hard_ends_at)
    return new_end if lot.ends_at - now < window and new_end > lot.ends_at else None


def _plan_challenge(*, lot: Lot, bidder, amount: Decimal, ceiling: Decimal, key, request_hash) -> list[PlannedBid]:
    """The rows a bid by someone other than the leader produces (proxy bidding)."""

    def row(who, price, *, max_amount=None, is_proxy=False, own=False) -> Bid:
        return Bid(
            lot=lot,
            bidder=who,
            amount=price,
            max_amount=max_amount,
            is_proxy=is_proxy,
            idempotency_key=key if own else None,
            request_hash=request_hash if own else "",
        )

    own_max = ceiling if ceiling > amount else None
    leader, leader_max = lot.high_bidder, lot.high_max_amount
    if leader is None:
        price = _with_reserve(lot, amount, ceiling)
        return [PlannedBid(row(bidder, price, max_amount=own_max, own=True), bidder)]

    if ceiling > leader_max:
        # The challenger takes the lead at the old maximum plus one increment,
        # capped by their own maximum; the old leader's proxy first bids its
        # maximum out, so the history shows what they were willing to pay.
        planned = []
        if leader_max > lot.current_price:
            planned.append(PlannedBid(row(leader, leader_max, is_proxy=True), leader))
        price = max(amount, min(ceiling, leader_max + increment_for(leader_max, lot.bid_increment)))
        price = _with_reserve(lot, price, ceiling)
        planned.append(PlannedBid(row(bidder, price, max_amount=own_max, own=True), bidder))
        return planned

    # The leader's maximum covers the challenge: the challenger is outbid at
    # once and the leader's proxy answers one increment above, within its max.
    planned = [PlannedBid(row(bidder, amount, max_amount=own_max, own=True), leader)]
    answer = min(leader_max, ceiling + increment_for(ceiling, lot.bid_increment))
    if answer > amount:
        planned.append(PlannedBid(row(leader, answer, is_proxy=True), leader))
    # Otherwise the challenge equals the leader's maximum: the earlier maximum
    # keeps the lead at that price.
    return planned


def _apply(*, lot: Lot, planned: list[PlannedBid], outbox: Outbox, now: datetime) -> None:
    """Insert the rows, move the lot's price and leader, record the events."""
    for step in planned:
        step.bid.created_at = now
    Bid.objects.bulk_create([p.bid for p in planned])
    public = [p for p in planned if not p.bid.raises_max_only]
    # Extend first so that every NEW_BID already shows the end it leads to;
    # a buy-now ends the lot instead.
    new_end = _soft_close_end(lot, now) if public and not public[-1].bid.is_buy_now else None
    if new_end is not None:
        lot.ends_at = new_end
    for step in public:
        lot.current_price = step.bid.amount
        lot.high_bidder = step.leader
        lot.bid_count += 1
        outbox.lot_event(
            "NEW_BID",
            bid=bid_payload(step.bid, bidder_username=step.bid.bidder.username),
            lot=lot_price_state(lot, high_bidder_username=step.leader.username),
        )
    if new_end is not None:
        outbox.lot_event("LOT_EXTENDED", ends_at=lot.ends_at)


def _insert_guarded(*, bidder, idempotency_key: str | None, insert) -> None:
    """Run the insert; a key taken meanwhile on another lot is a conflict."""
    try:
        with transaction.atomic():
            insert()
    except IntegrityError:
        if idempotency_key and Bid.objects.filter(bidder=bidder, idempotency_key=idempotency_key).exists():
            raise BidRejected(
                "idempotency_conflict", "This idempotency key was already used for a different request."
            ) from None
        raise


def _parse_amounts(amount: object, max_amount: object | None) -> tuple[Decimal, Decimal | None]:
    parsed = parse_money(amount, field="amount")
    parsed_max = None if max_amount is None else parse_money(max_amount, field="max_amount")
    if parsed_max is not None and parsed_max < parsed:
        raise InvalidBid("invalid_amount", "max_amount must be at least amount.", field="max_amount")
    return parsed, parsed_max


def _check_currency_places(lot: Lot, *amounts: Decimal | None) -> None:
    places = currency_places(lot.currency)
    for value in amounts:
        if value is not None and value != value.quantize(Decimal(1).scaleb(-places)):
            raise InvalidBid("invalid_amount", f"{lot.currency} amounts take {places} decimal places.")


def _plan_raise(*, lot: Lot, bidder, ceiling: Decimal, key, request_hash) -> PlannedBid:
    """The leader raises their hidden maximum; the price moves only to meet the reserve."""
    if ceiling <= lot.high_max_amount:
        raise BidRejected(
            "already_leading", "You are already the highest bidder; only a higher maximum changes your bid."
        )
    price = _with_reserve(lot, lot.current_price, ceiling)
    bid = Bid(
        lot=lot,
        bidder=bidder,
        amount=price,
        max_amount=ceiling,
        idempotency_key=key,
        request_hash=request_hash,
        raises_max_only=price == lot.current_price,
    )
    return PlannedBid(bid, bidder)


def _outbid_notice(lot: Lot) -> dict:
    return {
        "lot_id": lot.id,
        "title": lot.title,
        "currency": lot.currency,
        **lot_price_state(lot, high_bidder_username=lot.high_bidder.username),
    }


@count_bids("bid")
@transaction.atomic
def place_bid(
    *,
    lot_id: int,
    bidder,
    amount: object,
    max_amount: object | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> BidOutcome:
    """Place a bid, with an optional hidden maximum. Locks the lot row.

    Raises `invalid_amount`, `lot_not_found`, `lot_not_open`, `lot_closed`,
    `own_lot`, `staff_cannot_bid`, `bid_too_low`, `already_leading`,
    `idempotency_conflict`.
    """
    parsed_amount, parsed_max = _parse_amounts(amount, max_amount)
    request_hash = _request_hash("bid", lot_id, parsed_amount, parsed_max)
    lot = lock_lot(lot_id)
    now = now or timezone.now()
    if idempotency_key:
        earlier = _replay(lot=lot, bidder=bidder, idempotency_key=idempotency_key, request_hash=request_hash)
        if earlier is not None:
            return earlier
    ensure_can_bid(lot=lot, bidder=bidder, now=now)
    _check_currency_places(lot, parsed_amount, parsed_max)
    ceiling = parsed_max or parsed_amount
    previous_leader = lot.high_bidder

    if previous_leader is not None and previous_leader.pk == bidder.pk:
        planned = [_plan_raise(lot=lot, bidder=bidder, ceiling=ceiling, key=idempotency_key, request_hash=request_hash)]
    else:
        floor = lot_min_next_bid(lot)
        if parsed_amount < floor:
            raise BidRejected("bid_too_low", f"The minimum bid is {floor}.", min_next_bid=str(floor))
        planned = _plan_challenge(
            lot=lot,
            bidder=bidder,
            amount=parsed_amount,
            ceiling=ceiling,
            key=idempotency_key,
            request_hash=request_hash,
        )
    leading = planned[-1].leader is bidder
    if leading:
        lot.high_max_amount = ceiling

    outbox = Outbox(lot)
    _insert_guarded(
        bidder=bidder,
        idempotency_key=idempotency_key,
        insert=lambda: _apply(lot=lot, planned=planned, outbox=outbox, now=now),
    )
    lot.save(
        update_fields=["current_price", "high_bidder", "high_max_amount", "bid_count", "ends_at", "seq", "updated_at"]
    )
    if not leading:
        outbox.notify(bidder.pk, "OUTBID", **_outbid_notice(lot))
    elif previous_leader is not None and previous_leader.pk != bidder.pk:
        outbox.notify(previous_leader.pk, "OUTBID", **_outbid_notice(lot))
    outbox.flush()
    own_bid = next(p.bid for p in planned if not p.bid.is_proxy)
    return BidOutcome(bid=own_bid, lot=lot, leading=leading)


@count_bids("buy_now")
@transaction.atomic
def buy_now(*, lot_id: int, buyer, idempotency_key: str | None = None, now: datetime | None = None) -> BidOutcome:
    """Buy the lot at its buy-now price and close it at once. Locks the lot row.

    Raises `lot_not_found`, `lot_not_open`, `lot_closed`, `own_lot`,
    `staff_cannot_bid`, `buy_now_unavailable`, `idempotency_conflict`.
    """
    request_hash = _request_hash("buy_now", lot_id)
    lot = lock_lot(lot_id)
    now = now or timezone.now()
    if idempotency_key:
        earlier = _replay(lot=lot, bidder=buyer, idempotency_key=idempotency_key, request_hash=request_hash)
        if earlier is not None:
            return earlier
    ensure_can_bid(lot=lot, bidder=buyer, now=now)
    if lot.buy_now_price is None or (lot.current_price is not None and lot.current_price >= lot.buy_now_price):
        raise BidRejected("buy_now_unavailable", "Buy now is not available on this lot.")
    previous_leader = lot.high_bidder
    bid = Bid(
        lot=lot,
        bidder=buyer,
        amount=lot.buy_now_price,
        is_buy_now=True,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    outbox = Outbox(lot)
    lot.high_max_amount = lot.buy_now_price
    _insert_guarded(
        bidder=buyer,
        idempotency_key=idempotency_key,
        insert=lambda: _apply(lot=lot, planned=[PlannedBid(bid, buyer)], outbox=outbox, now=now),
    )
    # finish_lot saves only the closing fields; the bid's own changes first.
    lot.save(update_fields=["current_price", "high_bidder", "high_max_amount", "bid_count", "seq", "updated_at"])
    if previous_leader is not None and previous_leader.pk != buyer.pk:
        outbox.notify(previous_leader.pk, "OUTBID", **_outbid_notice(lot))
    finish_lot(lot=lot, outbox=outbox, now=now)
    outbox.flush()
    return BidOutcome(bid=bid, lot=lot, leading=True)


# --- Lot chat ------------------------------------------------------------------


def _take_chat_allowance(user) -> None:
    """A fixed one-minute window per user, shared by every process through the cache."""
    key = f"chat-rate:{user.pk}:{int(timezone.now().timestamp() // 60)}"
    cache.add(key, 0, timeout=90)
    if cache.incr(key) > settings.CHAT_MESSAGES_PER_MINUTE:
        raise RateLimited("rate_limited", "You are sending messages too fast; wait a minute.")


@transaction.atomic
def post_chat_message(*, lot_id: int, author, text: object) -> ChatMessage:
    """Post to a lot's room; broadcast after commit.

    Raises `invalid_text`, `text_too_long`, `lot_not_found`, `rate_limited`.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("invalid_text", "A message needs some text.")
    text = text.strip()
    if len(text) > settings.CHAT_MAX_LENGTH:
        raise InvalidInput("text_too_long", f"A message has at most {settings.CHAT_MAX_LENGTH} characters.")
    lot = Lot.objects.exclude(status=LotStatus.DRAFT).filter(pk=lot_id).first()
    if lot is None:
        raise NotFound("lot_not_found", "No such lot.")
    _take_chat_allowance(author)
    message = ChatMessage.objects.create(lot=lot, user=author, text=text, is_seller=author.pk == lot.seller_id)
    message.user = author
    text_frame = dumps({"type": "CHAT_MESSAGE", "lot_id": lot.pk, **chat_payload(message)})
    transaction.on_commit(lambda: broadcast_chat(lot.pk, text_frame))
    return message


@transaction.atomic
def hide_chat_message(*, lot_id: int, message_id: int, actor) -> ChatMessage:
    """The lot's seller or staff hide one of its messages. Raises `chat_message_not_found`, `not_lot_manager`."""
    message = ChatMessage.objects.select_for_update().select_related("lot").filter(pk=message_id, lot_id=lot_id).first()
    if message is None:
        raise NotFound("chat_message_not_found", "No such message in this lot's chat.")
    ensure_can_manage(lot=message.lot, actor=actor)
    if not message.hidden:
        message.hidden = True
        message.hidden_by = actor
        message.save(update_fields=["hidden", "hidden_by"])
        text_frame = dumps({"type": "CHAT_HIDDEN", "lot_id": message.lot_id, "id": message.pk})
        transaction.on_commit(lambda: broadcast_chat(message.lot_id, text_frame))
    return message
