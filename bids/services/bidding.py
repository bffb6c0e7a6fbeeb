"""Placing bids and buying now: one short transaction under the lot's row lock, for one bid or a batch.

A bid is one short transaction: lock the lot, check, insert the bid rows,
update the lot, store its events, commit; the events are broadcast after
the commit. Bids that waited together share one such transaction
(`place_bids`), each decided as if alone. Every writer of a lot takes the
same lock (`lock_lot`, or `statements.lock_for_bid` with the same row lock).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from bids import statements
from bids.events import bid_payload
from bids.exceptions import BidderRefused, BidRejected, BidsRateLimited
from bids.models import Bid
from bids.services.idempotency import replay
from bids.services.planning import Decided, PlannedBid, advance, plan_bid
from bids.services.requests import BidOutcome, BidRequest, bid_request, hash_request
from bids.services.rules import check_currency_places, ensure_bidder_active, ensure_can_bid, take_bid_allowance
from lots.events import EventType, Outbox, lot_price_state
from lots.models import Lot, LotAlias
from lots.services import finish_lot
from ops.exceptions import DomainError
from ops.metrics import count_bid_result, count_bids


def _write_decided(
    *, lot: Lot, decided: list[Decided], known: dict[int, str], paddles: dict[int, int], now
) -> list[BidOutcome]:
    """Number the decided bids' rows, name first-time bidders, write rows, events and notices (`bids.statements`).

    A bidder's alias is fixed at their first bid on the lot: their paddle in the
    lot's sale if they registered (`paddles`), else "Bidder N" (the Nth to bid on
    it). Under the lot's lock, so the numbers never race. `known`: aliases the
    transaction already read; the others are read afresh with the ids.
    """
    aliases = dict(known)
    wanted = {d.request.bidder.pk for d in decided} | {d.previous_leader for d in decided} - {None}
    rows = [step.bid for d in decided for step in d.planned]
    ids, read, last_number = statements.reserve(bids=len(rows), lot_id=lot.pk, alias_users=wanted - aliases.keys())
    aliases |= read
    new_aliases = []
    for d in decided:
        bidder_id = d.request.bidder.pk
        if bidder_id not in aliases:
            last_number += 1
            label = f"Paddle {paddles[bidder_id]}" if paddles.get(bidder_id) is not None else f"Bidder {last_number}"
            new_aliases.append(LotAlias(lot_id=lot.pk, user_id=bidder_id, number=last_number, label=label))
            aliases[bidder_id] = label
    for bid in rows:
        bid.created_at = now
    if ids is None:
        Bid.objects.bulk_create(rows)  # This database numbers rows only as it inserts them.
        stored = new_aliases
    else:
        for bid, bid_id in zip(rows, ids, strict=True):
            bid.id = bid_id
        stored = [*rows, *new_aliases]
    outbox = Outbox(lot)
    outcomes = []
    for d in decided:
        bidder_id = d.request.bidder.pk
        public = [step for step in d.planned if not step.bid.raises_max_only]
        for step, state in zip(public, d.after_rows, strict=True):
            outbox.lot_event(
                EventType.NEW_BID,
                bid=bid_payload(step.bid, bidder_alias=aliases[step.bid.bidder_id]),
                lot=lot_price_state(state, high_bidder_alias=aliases[step.leader_id]),
            )
        if d.extended:
            outbox.lot_event(EventType.LOT_EXTENDED, ends_at=d.after.ends_at)
        d.after.seq = lot.seq
        outbid = bidder_id if not d.leading else d.previous_leader
        if outbid is not None and outbid != d.after.high_bidder_id:
            outbox.notify(outbid, EventType.OUTBID, **_outbid_notice(d.after, aliases))
        outcomes.append(
            BidOutcome(
                bid=next(step.bid for step in d.planned if not step.bid.is_proxy),
                lot=d.after,
                leading=d.leading,
                lot_state=lot_price_state(d.after, high_bidder_alias=aliases[d.after.high_bidder_id]),
                seq=lot.seq,
                alias=aliases[bidder_id],
            )
        )
    lot.updated_at = timezone.now()
    statements.write(rows=stored, lot=lot, fields=PRICE_FIELDS, outbox=outbox)
    return outcomes


def _outbid_notice(lot: Lot, aliases: dict[int, str]) -> dict:
    return {
        "lot_id": lot.id,
        "title": lot.title,
        "currency": lot.currency,
        **lot_price_state(lot, high_bidder_alias=aliases[lot.high_bidder_id]),
    }


def place_bid(
    *,
    lot_id: int,
    bidder,
    amount: object,
    max_amount: object | None = None,
    idempotency_key: str | None = None,
    now: datetime | None = None,
) -> BidOutcome:
    """Place a bid, with an optional hidden maximum: `place_bids` for one. Locks the lot row.

    Raises `invalid_amount`, `rate_limited`, `lot_not_found`, `lot_not_open`,
    `lot_closed`, `own_lot`, `staff_cannot_bid`, `bid_too_low`, `already_leading`,
    `idempotency_conflict`, `account_inactive`, `session_ended`, `not_registered`, `registration_pending`.
    """
    request = bid_request(
        lot_id=lot_id, bidder=bidder, amount=amount, max_amount=max_amount, idempotency_key=idempotency_key
    )
    return place_bid_request(lot_id=lot_id, request=request, now=now)


def place_bid_request(*, lot_id: int, request: BidRequest, now: datetime | None = None) -> BidOutcome:
    """`place_bids` for one parsed bid; raises its error."""
    [result] = place_bids(lot_id=lot_id, requests=[request], now=now)
    if isinstance(result, Exception):
        raise result
    return result


PRICE_FIELDS = ["current_price", "high_bidder", "high_max_amount", "bid_count", "ends_at", "seq", "updated_at"]


def place_bids(*, lot_id: int, requests: list[BidRequest], now: datetime | None = None) -> list[BidOutcome | Exception]:
    """Bids on one lot that waited together, decided in their order in one transaction; each result (an
    outcome, or the error `place_bid` would raise) is what that bid would have had alone in that order.

    One lock and one commit for all (group commit): on PostgreSQL five statements
    for the batch, or six when more than one bidder is in it (`bids.statements`).
    Each bid's allowance (`BIDS_PER_MINUTE`) is taken first, outside the lock.
    A refused bid or a taken key is looked up by its idempotency key only then;
    a key that turns out to be taken by a stored bid sends the batch's bids
    through one at a time instead.
    """
    results: list[BidOutcome | Exception | None] = [None] * len(requests)
    allowed = []
    for index, request in enumerate(requests):
        try:
            take_bid_allowance(request.bidder)
        except BidRejected as exc:
            results[index] = exc
            continue
        allowed.append(index)
    if allowed:
        decided = _decide_together(lot_id=lot_id, requests=[requests[i] for i in allowed], now=now)
        for index, result in zip(allowed, decided, strict=True):
            results[index] = result
    for index, request in enumerate(requests):
        result = results[index]
        if isinstance(result, (BidRejected, IntegrityError)) and not isinstance(
            result, (BidderRefused, BidsRateLimited)
        ):
            try:
                earlier = replay(
                    bidder=request.bidder, idempotency_key=request.idempotency_key, request_hash=request.request_hash
                )
            except BidRejected as conflict:
                earlier = conflict
            if earlier is not None:
                results[index] = result = earlier
        count_bid_result("bid", result)
    return results


def _decide_together(*, lot_id: int, requests: list[BidRequest], now: datetime | None) -> list:
    try:
        return _place_bids_locked(lot_id=lot_id, requests=requests, now=now)
    except DomainError as exc:  # `lot_not_found`: the same for every bid
        return [exc] * len(requests)
    except IntegrityError as exc:
        if len(requests) == 1:
            return [exc]
        # A key taken by a stored bid: the batch again, a bid at a time, to tell which.
        return [_decide_together(lot_id=lot_id, requests=[request], now=now)[0] for request in requests]


@transaction.atomic
def _place_bids_locked(*, lot_id: int, requests: list[BidRequest], now: datetime | None) -> list:
    first = requests[0].bidder
    lot = statements.lock_for_bid(lot_id, first)
    bidders = {first.pk: statements.Bidder.of_locked(lot)}
    others = {request.bidder.pk: request.bidder for request in requests if request.bidder.pk not in bidders}
    if others:
        bidders |= statements.read_bidders(lot=lot, user_ids=list(others))
    known = {user_id: bidder.alias for user_id, bidder in bidders.items() if bidder.alias}
    if lot.high_bidder_id is not None and lot.leader_alias:
        known.setdefault(lot.high_bidder_id, lot.leader_alias)
    now = now or timezone.now()
    results: list = [None] * len(requests)
    decided: list[tuple[int, Decided]] = []
    keys: dict[tuple[int, str], tuple[str, int]] = {}
    for index, request in enumerate(requests):
        key = (request.bidder.pk, request.idempotency_key) if request.idempotency_key else None
        if key in keys:
            # The same key twice in one batch: a retry answers with the first outcome, anything else conflicts.
            request_hash, first_index = keys[key]
            results[index] = (
                first_index
                if request_hash == request.request_hash
                else BidRejected(
                    "idempotency_conflict", "This idempotency key was already used for a different request."
                )
            )
            continue
        try:
            planned, ceiling = _decide_bid(lot=lot, request=request, bidder=bidders[request.bidder.pk], now=now)
        except BidRejected as exc:
            results[index] = exc
            continue
        if key is not None:
            keys[key] = (request.request_hash, index)
        decided.append((index, advance(lot=lot, request=request, planned=planned, ceiling=ceiling, now=now)))
    if decided:
        paddles = {user_id: bidder.paddle for user_id, bidder in bidders.items()}
        outcomes = _write_decided(lot=lot, decided=[d for _, d in decided], known=known, paddles=paddles, now=now)
        for (index, _), outcome in zip(decided, outcomes, strict=True):
            results[index] = outcome
    for index, result in enumerate(results):
        if isinstance(result, int):
            results[index] = dataclasses.replace(results[result], replayed=True)
    return results


def _decide_bid(*, lot: Lot, request: BidRequest, bidder: statements.Bidder, now) -> tuple[list[PlannedBid], Decimal]:
    """The rows one bid makes against the lot as it stands. Raises what `place_bid` documents."""
    ensure_bidder_active(request.bidder, bidder)
    ensure_can_bid(lot=lot, bidder=request.bidder, now=now, registration=bidder.registration)
    check_currency_places(lot, request.amount, request.max_amount)
    ceiling = request.max_amount or request.amount
    planned = plan_bid(
        lot=lot,
        bidder=request.bidder,
        amount=request.amount,
        ceiling=ceiling,
        key=request.idempotency_key,
        request_hash=request.request_hash,
    )
    return planned, ceiling


@count_bids("buy_now")
def buy_now(*, lot_id: int, buyer, idempotency_key: str | None = None, now: datetime | None = None) -> BidOutcome:
    """Buy the lot at its buy-now price and close it at once. Locks the lot row.

    Raises `rate_limited`, `lot_not_found`, `lot_not_open`, `lot_closed`, `own_lot`,
    `staff_cannot_bid`, `buy_now_unavailable`, `idempotency_conflict`, `account_inactive`, `session_ended`.
    """
    request = BidRequest(buyer, Decimal(0), None, idempotency_key, hash_request("buy_now", lot_id))
    take_bid_allowance(buyer)
    try:
        return _buy_now_locked(lot_id=lot_id, request=request, now=now)
    except BidderRefused:
        raise
    except (BidRejected, IntegrityError):
        earlier = replay(bidder=buyer, idempotency_key=idempotency_key, request_hash=request.request_hash)
        if earlier is None:
            raise
        return earlier


@transaction.atomic
def _buy_now_locked(*, lot_id: int, request: BidRequest, now) -> BidOutcome:
    buyer = request.bidder
    lot = statements.lock_for_bid(lot_id, buyer)
    state = statements.Bidder.of_locked(lot)
    ensure_bidder_active(buyer, state)
    now = now or timezone.now()
    ensure_can_bid(lot=lot, bidder=buyer, now=now, registration=state.registration)
    if lot.buy_now_price is None or (lot.current_price is not None and lot.current_price >= lot.buy_now_price):
        raise BidRejected("buy_now_unavailable", "Buy now is not available on this lot.")
    bid = Bid(
        lot_id=lot.pk,
        bidder_id=buyer.pk,
        amount=lot.buy_now_price,
        submitted_amount=lot.buy_now_price,
        is_buy_now=True,
        idempotency_key=request.idempotency_key,
        request_hash=request.request_hash,
    )
    known = {
        user_id: alias for user_id, alias in ((buyer.pk, state.alias), (lot.high_bidder_id, lot.leader_alias)) if alias
    }
    decided = advance(lot=lot, request=request, planned=[PlannedBid(bid, buyer.pk)], ceiling=lot.buy_now_price, now=now)
    [outcome] = _write_decided(lot=lot, decided=[decided], known=known, paddles={buyer.pk: state.paddle}, now=now)
    # Then the close, which names the winner by the alias just stored; its events follow the bid's.
    closing = Outbox(lot)
    finish_lot(lot=lot, outbox=closing, now=now)
    closing.flush()
    return dataclasses.replace(outcome, lot=lot, seq=lot.seq)
