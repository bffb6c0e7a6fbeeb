"""The rows a bid makes against the lot as it stands: proxy bidding, the reserve, soft close."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services.requests import BidRequest
from lots.events import lot_min_next_bid
from lots.models import Lot
from lots.pricing import currency_places, increment_for


@dataclass(frozen=True)
class PlannedBid:
    """A bid row to insert, and who leads (their user id) once it stands."""

    bid: Bid
    leader_id: int


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

    def row(who: int, price, *, max_amount=None, is_proxy=False, own=False) -> Bid:
        return Bid(
            lot_id=lot.pk,
            bidder_id=who,
            amount=price,
            submitted_amount=amount if own else None,
            max_amount=max_amount,
            is_proxy=is_proxy,
            idempotency_key=key if own else None,
            request_hash=request_hash if own else "",
        )

    own_max = ceiling if ceiling > amount else None
    leader, leader_max = lot.high_bidder_id, lot.high_max_amount
    if leader is None:
        price = _with_reserve(lot, amount, ceiling)
        return [PlannedBid(row(bidder.pk, price, max_amount=own_max, own=True), bidder.pk)]

    if ceiling > leader_max:
        # The challenger takes the lead at the old maximum plus one increment,
        # capped by their own maximum; the old leader's proxy first bids its
        # maximum out, so the history shows what they were willing to pay.
        planned = []
        if leader_max > lot.current_price:
            planned.append(PlannedBid(row(leader, leader_max, is_proxy=True), leader))
        price = max(
            amount,
            min(
                ceiling, leader_max + increment_for(leader_max, lot.bid_increment, places=currency_places(lot.currency))
            ),
        )
        price = _with_reserve(lot, price, ceiling)
        planned.append(PlannedBid(row(bidder.pk, price, max_amount=own_max, own=True), bidder.pk))
        return planned

    # The leader's maximum covers the challenge: the challenger is outbid at
    # once and the leader's proxy answers one increment above, within its max.
    planned = [PlannedBid(row(bidder.pk, amount, max_amount=own_max, own=True), leader)]
    answer = min(leader_max, ceiling + increment_for(ceiling, lot.bid_increment, places=currency_places(lot.currency)))
    if answer > amount:
        planned.append(PlannedBid(row(leader, answer, is_proxy=True), leader))
    # Otherwise the challenge equals the leader's maximum: the earlier maximum
    # keeps the lead at that price.
    return planned


def take_step(lot: Lot, step: PlannedBid) -> None:
    """Move the lot's price and leader to where a public bid row puts them."""
    lot.current_price = step.bid.amount
    lot.high_bidder_id = step.leader_id
    lot.bid_count += 1


def plan_bid(*, lot: Lot, bidder, amount: Decimal, ceiling: Decimal, key, request_hash) -> list[PlannedBid]:
    """The rows a bid makes against the lot's current price. Raises `bid_too_low`, `already_leading`."""
    if lot.high_bidder_id == bidder.pk:
        return [_plan_raise(lot=lot, bidder=bidder, amount=amount, ceiling=ceiling, key=key, request_hash=request_hash)]
    floor = lot_min_next_bid(lot)
    if amount < floor:
        raise BidRejected("bid_too_low", f"The minimum bid is {floor}.", min_next_bid=str(floor))
    return _plan_challenge(lot=lot, bidder=bidder, amount=amount, ceiling=ceiling, key=key, request_hash=request_hash)


@dataclass
class Decided:
    """A bid the rules accepted in a batch, before its rows are numbered and its events written."""

    request: BidRequest
    planned: list[PlannedBid]
    previous_leader: int | None
    leading: bool
    # The lot as each public row left it, and as the whole bid left it (copies: later bids move the lot on).
    after_rows: list[Lot]
    after: Lot
    extended: bool


def advance(*, lot: Lot, request: BidRequest, planned: list[PlannedBid], ceiling: Decimal | None, now) -> Decided:
    """Move the locked lot to where a decided bid puts it; what its events will say is kept aside."""
    previous_leader = lot.high_bidder_id
    leading = planned[-1].leader_id == request.bidder.pk
    if leading and ceiling is not None:
        lot.high_max_amount = ceiling
    public = [p for p in planned if not p.bid.raises_max_only]
    # Extend first so that every NEW_BID already shows the end it leads to; a buy-now ends the lot instead.
    new_end = _soft_close_end(lot, now) if public and not public[-1].bid.is_buy_now else None
    if new_end is not None:
        lot.ends_at = new_end
    after_rows = []
    for step in public:
        take_step(lot, step)
        after_rows.append(copy.copy(lot))
    return Decided(request, planned, previous_leader, leading, after_rows, copy.copy(lot), new_end is not None)


def _plan_raise(*, lot: Lot, bidder, amount: Decimal, ceiling: Decimal, key, request_hash) -> PlannedBid:
    """The leader raises their hidden maximum; the price moves only to meet the reserve."""
    if ceiling <= lot.high_max_amount:
        raise BidRejected(
            "already_leading", "You are already the highest bidder; only a higher maximum changes your bid."
        )
    price = _with_reserve(lot, lot.current_price, ceiling)
    bid = Bid(
        lot_id=lot.pk,
        bidder_id=bidder.pk,
        amount=price,
        submitted_amount=amount,
        max_amount=ceiling,
        idempotency_key=key,
        request_hash=request_hash,
        raises_max_only=price == lot.current_price,
    )
    return PlannedBid(bid, bidder.pk)
