"""Bidding: every rule of placing a bid and buying now, under the lot's row lock.

A bid is one short transaction: lock the lot, check, insert the bid rows,
update the lot, store its events, commit; the events are broadcast after
the commit. Bids that waited together share one such transaction
(`place_bids`), each decided as if alone. Every writer of a lot takes the
same lock (`lock_lot`, or `statements.lock_for_bid` with the same row lock).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from accounts.exceptions import SessionEnded
from accounts.services import ensure_session_checks_pass, ensure_session_open
from bids import statements
from bids.events import bid_payload, broadcast_chat, chat_payload
from bids.exceptions import BidderRefused, BidRejected, BidsRateLimited, InvalidBid
from bids.models import Bid, ChatMessage, VoidReason
from lots.events import Outbox, dumps, lot_min_next_bid, lot_price_state
from lots.exceptions import InvalidAmount, LotActionRefused, NotLotManager
from lots.models import Lot, LotAlias, LotStatus, Registration, RegistrationStatus
from lots.pricing import currency_places, increment_for, parse_money
from lots.selectors import get_aliases, is_lot_visible, visible_to
from lots.services import ensure_can_manage, finish_lot, lock_lot
from ops.exceptions import DomainError, InvalidInput, NotFound, RateLimited
from ops.metrics import count_bid_result, count_bids
from ops.ratelimit import take_allowance


@dataclass(frozen=True)
class BidOutcome:
    bid: Bid
    lot: Lot
    leading: bool
    # The lot's public price state after the bid (`lots.events.lot_price_state`), and its `seq` then.
    lot_state: dict
    seq: int
    replayed: bool = False
    # The bidder's public alias on the lot.
    alias: str | None = None


@dataclass(frozen=True)
class PlannedBid:
    """A bid row to insert, and who leads (their user id) once it stands."""

    bid: Bid
    leader_id: int


def _request_hash(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _replay(*, bidder, idempotency_key: str | None, request_hash: str) -> BidOutcome | None:
    """The first outcome of a retried key, None for a new key (or none); read only for a request that could
    not stand as new (refused by the rules, or its key taken meanwhile).

    Raises `idempotency_conflict` when the key came with another request.
    """
    if not idempotency_key:
        return None
    earlier = Bid.objects.filter(bidder=bidder, idempotency_key=idempotency_key).select_related("lot").first()
    if earlier is None:
        return None
    if earlier.request_hash != request_hash:
        raise BidRejected("idempotency_conflict", "This idempotency key was already used for a different request.")
    lot = earlier.lot
    aliases = get_aliases(lot_id=lot.pk, user_ids=[bidder.pk, lot.high_bidder_id])
    return BidOutcome(
        bid=earlier,
        lot=lot,
        leading=lot.high_bidder_id == bidder.pk,
        lot_state=lot_price_state(lot, high_bidder_alias=aliases.get(lot.high_bidder_id)),
        seq=lot.seq,
        replayed=True,
        alias=aliases.get(bidder.pk),
    )


def ensure_can_bid(*, lot: Lot, bidder, now: datetime, registration: str | None) -> None:
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
        _ensure_approved(registration)


def _ensure_bidder_active(bidder, state: statements.Bidder) -> None:
    """Raises `account_inactive` or `session_ended` from the bidder's row as read in the bid's transaction:
    a socket's user may have been deactivated, or their sessions ended, since the socket opened."""
    try:
        ensure_session_checks_pass(
            session_active=bool(state.is_active),
            session_current=state.password == bidder.password and state.session_epoch == bidder.session_epoch,
        )
    except SessionEnded as exc:
        raise BidderRefused(exc.code, exc.message) from exc


def _ensure_approved(status: str | None) -> None:
    """Raises `not_registered` (none, rejected or revoked) or `registration_pending`."""
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


def _take_step(lot: Lot, step: PlannedBid) -> None:
    """Move the lot's price and leader to where a public bid row puts them."""
    lot.current_price = step.bid.amount
    lot.high_bidder_id = step.leader_id
    lot.bid_count += 1


def _plan_bid(*, lot: Lot, bidder, amount: Decimal, ceiling: Decimal, key, request_hash) -> list[PlannedBid]:
    """The rows a bid makes against the lot's current price. Raises `bid_too_low`, `already_leading`."""
    if lot.high_bidder_id == bidder.pk:
        return [_plan_raise(lot=lot, bidder=bidder, amount=amount, ceiling=ceiling, key=key, request_hash=request_hash)]
    floor = lot_min_next_bid(lot)
    if amount < floor:
        raise BidRejected("bid_too_low", f"The minimum bid is {floor}.", min_next_bid=str(floor))
    return _plan_challenge(lot=lot, bidder=bidder, amount=amount, ceiling=ceiling, key=key, request_hash=request_hash)


@dataclass
class _Decided:
    """A bid the rules accepted in a batch, before its rows are numbered and its events written."""

    request: BidRequest
    planned: list[PlannedBid]
    previous_leader: int | None
    leading: bool
    # The lot as each public row left it, and as the whole bid left it (copies: later bids move the lot on).
    after_rows: list[Lot]
    after: Lot
    extended: bool


def _advance(*, lot: Lot, request: BidRequest, planned: list[PlannedBid], ceiling: Decimal | None, now) -> _Decided:
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
        _take_step(lot, step)
        after_rows.append(copy.copy(lot))
    return _Decided(request, planned, previous_leader, leading, after_rows, copy.copy(lot), new_end is not None)


def _write_decided(
    *, lot: Lot, decided: list[_Decided], known: dict[int, str], paddles: dict[int, int], now
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
                "NEW_BID",
                bid=bid_payload(step.bid, bidder_alias=aliases[step.bid.bidder_id]),
                lot=lot_price_state(state, high_bidder_alias=aliases[step.leader_id]),
            )
        if d.extended:
            outbox.lot_event("LOT_EXTENDED", ends_at=d.after.ends_at)
        d.after.seq = lot.seq
        outbid = bidder_id if not d.leading else d.previous_leader
        if outbid is not None and outbid != d.after.high_bidder_id:
            outbox.notify(outbid, "OUTBID", **_outbid_notice(d.after, aliases))
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


def _parse_amounts(amount: object, max_amount: object | None) -> tuple[Decimal, Decimal | None]:
    try:
        parsed = parse_money(amount, field="amount")
        parsed_max = None if max_amount is None else parse_money(max_amount, field="max_amount")
    except InvalidAmount as exc:
        raise InvalidBid(exc.code, exc.message, **exc.extra) from exc
    if parsed_max is not None and parsed_max < parsed:
        raise InvalidBid("invalid_amount", "max_amount must be at least amount.", field="max_amount")
    return parsed, parsed_max


def _check_currency_places(lot: Lot, *amounts: Decimal | None) -> None:
    places = currency_places(lot.currency)
    for value in amounts:
        if value is not None and value != value.quantize(Decimal(1).scaleb(-places)):
            raise InvalidBid("invalid_amount", f"{lot.currency} amounts take {places} decimal places.")


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


def _outbid_notice(lot: Lot, aliases: dict[int, str]) -> dict:
    return {
        "lot_id": lot.id,
        "title": lot.title,
        "currency": lot.currency,
        **lot_price_state(lot, high_bidder_alias=aliases[lot.high_bidder_id]),
    }


def _take_bid_allowance(bidder) -> None:
    """Raises `rate_limited` past `BIDS_PER_MINUTE` bids and buy-nows by one user, counted across processes.

    Taken before the lot's lock, so a throttled request never waits for or
    holds it; retries of an idempotency key count too (each would take the lock).
    """
    wait = take_allowance(f"bids:{bidder.pk}", limit=settings.BIDS_PER_MINUTE, window=60)
    if wait:
        raise BidsRateLimited("rate_limited", f"Too many bids; retry in {wait} s.", retry_after=wait)


@dataclass(frozen=True)
class BidRequest:
    """A bid as its bidder sent it, its amounts parsed (`bid_request`): what `place_bids` decides."""

    bidder: Any
    amount: Decimal
    max_amount: Decimal | None
    idempotency_key: str | None
    request_hash: str


def bid_request(*, lot_id: int, bidder, amount: object, max_amount: object | None = None, idempotency_key=None):
    """Parse a bid's amounts; no I/O. Raises `invalid_amount`."""
    parsed_amount, parsed_max = _parse_amounts(amount, max_amount)
    return BidRequest(
        bidder=bidder,
        amount=parsed_amount,
        max_amount=parsed_max,
        idempotency_key=idempotency_key,
        request_hash=_request_hash("bid", lot_id, parsed_amount, parsed_max),
    )


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
            _take_bid_allowance(request.bidder)
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
                earlier = _replay(
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
    decided: list[tuple[int, _Decided]] = []
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
        decided.append((index, _advance(lot=lot, request=request, planned=planned, ceiling=ceiling, now=now)))
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
    _ensure_bidder_active(request.bidder, bidder)
    ensure_can_bid(lot=lot, bidder=request.bidder, now=now, registration=bidder.registration)
    _check_currency_places(lot, request.amount, request.max_amount)
    ceiling = request.max_amount or request.amount
    planned = _plan_bid(
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
    request = BidRequest(buyer, Decimal(0), None, idempotency_key, _request_hash("buy_now", lot_id))
    _take_bid_allowance(buyer)
    try:
        return _buy_now_locked(lot_id=lot_id, request=request, now=now)
    except BidderRefused:
        raise
    except (BidRejected, IntegrityError):
        earlier = _replay(bidder=buyer, idempotency_key=idempotency_key, request_hash=request.request_hash)
        if earlier is None:
            raise
        return earlier


@transaction.atomic
def _buy_now_locked(*, lot_id: int, request: BidRequest, now) -> BidOutcome:
    buyer = request.bidder
    lot = statements.lock_for_bid(lot_id, buyer)
    state = statements.Bidder.of_locked(lot)
    _ensure_bidder_active(buyer, state)
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
    decided = _advance(
        lot=lot, request=request, planned=[PlannedBid(bid, buyer.pk)], ceiling=lot.buy_now_price, now=now
    )
    [outcome] = _write_decided(lot=lot, decided=[decided], known=known, paddles={buyer.pk: state.paddle}, now=now)
    # Then the close, which names the winner by the alias just stored; its events follow the bid's.
    closing = Outbox(lot)
    finish_lot(lot=lot, outbox=closing, now=now)
    closing.flush()
    return dataclasses.replace(outcome, lot=lot, seq=lot.seq)


# --- Voiding a bidder's bids ----------------------------------------------------


def _replan(*, lot: Lot, submissions: list[Bid]) -> list[Bid]:
    """Replay own bids, in order, against the lot's state; returns the rows they make now.

    A submission the rules now refuse makes no row: a leader's raise that no
    longer raises. Prices only fall when bids are taken out, so a replayed bid
    is never below the minimum it once met.
    """
    rows: list[Bid] = []
    for submission in submissions:
        ceiling = submission.max_amount if submission.max_amount is not None else submission.submitted_amount
        try:
            planned = _plan_bid(
                lot=lot,
                bidder=submission.bidder,
                amount=submission.submitted_amount,
                ceiling=ceiling,
                key=submission.idempotency_key,
                request_hash=submission.request_hash,
            )
        except BidRejected:
            continue
        if planned[-1].leader_id == submission.bidder_id:
            lot.high_max_amount = ceiling
        for step in planned:
            step.bid.created_at = submission.created_at
            if not step.bid.raises_max_only:
                _take_step(lot, step)
        rows.extend(step.bid for step in planned)
    return rows


@transaction.atomic
def void_bids(*, lot_id: int, bidder_id: int, actor, now: datetime | None = None) -> int:
    """Staff void every bid of one bidder on an open lot. Locks the lot row.

    The lot's other bids are replayed without them, so prices the voided
    bidder pushed up fall back: rows from the bidder's first bid on are marked
    void and replaced by the replay's. Returns how many of the bidder's rows
    were voided (0 when none stand). Raises `not_staff`, `lot_not_found`,
    `lot_not_open`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff void bids.")
    lot = lock_lot(lot_id)
    if lot.status != LotStatus.OPEN:
        raise LotActionRefused("lot_not_open", "Bids can be voided only while the lot is open.")
    standing = list(Bid.objects.filter(lot=lot, void_reason="").select_related("bidder").order_by("id"))
    first = next((index for index, row in enumerate(standing) if row.bidder_id == bidder_id), None)
    if first is None:
        return 0
    if first and standing[first - 1].is_proxy and standing[first - 1].created_at == standing[first].created_at:
        # The previous leader's proxy bid, made by the same submission (`_plan_challenge`).
        first -= 1
    first_voided = standing[first].pk
    now = now or timezone.now()
    redone = standing[first:]
    voided = [row for row in redone if row.bidder_id == bidder_id]
    # The replay of the bids before the first voided one rebuilds the state
    # they left; only the later ones make new rows.
    submissions = [row for row in standing if not row.is_proxy and row.bidder_id != bidder_id]
    lot.current_price = lot.high_bidder_id = lot.high_max_amount = None
    lot.bid_count = 0
    _replan(lot=lot, submissions=[row for row in submissions if row.pk < first_voided])
    replacements = _replan(lot=lot, submissions=[row for row in submissions if row.pk >= first_voided])

    Bid.objects.filter(pk__in=[row.pk for row in redone]).update(
        void_reason=Case(
            When(bidder_id=bidder_id, then=Value(VoidReason.VOIDED)), default=Value(VoidReason.SUPERSEDED)
        ),
        voided_at=now,
        voided_by=actor,
        # A superseded bid's idempotency key moves to its replacement.
        idempotency_key=Case(When(bidder_id=bidder_id, then=F("idempotency_key")), default=None),
    )
    Bid.objects.bulk_create(replacements)
    outbox = Outbox(lot)
    aliases = get_aliases(lot_id=lot.pk, user_ids=[bidder_id, lot.high_bidder_id])
    outbox.lot_event(
        "BIDS_VOIDED",
        bidder=aliases.get(bidder_id),
        voided=len(voided),
        lot=lot_price_state(lot, high_bidder_alias=aliases.get(lot.high_bidder_id)),
    )
    lot.save(update_fields=["current_price", "high_bidder", "high_max_amount", "bid_count", "seq", "updated_at"])
    outbox.notify(bidder_id, "BIDS_VOIDED", lot_id=lot.id, title=lot.title, voided=len(voided))
    outbox.flush()
    return len(voided)


@transaction.atomic
def void_participant_bids(*, registration_id: int, actor, now: datetime | None = None) -> dict[int, int]:
    """Staff void a sale participant's bids on every open lot of the sale, lots locked in id order.

    Returns {lot id: bids voided} for the lots that had some. Raises `not_staff`,
    `registration_not_found`.
    """
    if not actor.is_staff:
        raise NotLotManager("not_staff", "Only staff void bids.")
    registration = Registration.objects.filter(pk=registration_id).first()
    if registration is None:
        raise NotFound("registration_not_found", "No such registration.")
    lot_ids = (
        Bid.objects.filter(
            lot__auction_id=registration.auction_id,
            lot__status=LotStatus.OPEN,
            bidder_id=registration.user_id,
            void_reason="",
        )
        .order_by("lot_id")
        .values_list("lot_id", flat=True)
        .distinct()
    )
    voided = {}
    for lot_id in lot_ids:
        try:
            count = void_bids(lot_id=lot_id, bidder_id=registration.user_id, actor=actor, now=now)
        except LotActionRefused:
            continue  # Closed since the list was read: its result stands.
        if count:
            voided[lot_id] = count
    return voided


# --- Lot chat ------------------------------------------------------------------


def _take_chat_allowance(user) -> None:
    """Raises `rate_limited` past `CHAT_MESSAGES_PER_MINUTE` messages by one user, counted across processes."""
    wait = take_allowance(f"chat:{user.pk}", limit=settings.CHAT_MESSAGES_PER_MINUTE, window=60)
    if wait:
        raise RateLimited("rate_limited", "You are sending messages too fast; wait a minute.", retry_after=wait)


def storable_text(text: str) -> bool:
    """False for what JSON's "\\u0000" and lone "\\ud800" escapes decode to: PostgreSQL stores neither."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


@transaction.atomic
def post_chat_message(*, lot_id: int, author, text: object) -> ChatMessage:
    """Post to a lot's room; broadcast after commit.

    Raises `invalid_text`, `text_too_long`, `lot_not_found`, `rate_limited`, `account_inactive`, `session_ended`.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("invalid_text", "A message needs some text.")
    if not storable_text(text):
        raise InvalidInput("invalid_text", "The text contains characters that cannot be stored.")
    text = text.strip()
    if len(text) > settings.CHAT_MAX_LENGTH:
        raise InvalidInput("text_too_long", f"A message has at most {settings.CHAT_MAX_LENGTH} characters.")
    lot = Lot.objects.filter(visible_to(author), pk=lot_id).first()
    if lot is None or lot.status == LotStatus.DRAFT:
        # Nobody chats on a draft, not even its seller; a hidden one is not found.
        raise NotFound("lot_not_found", "No such lot.")
    _take_chat_allowance(author)
    ensure_session_open(user=author)
    message = ChatMessage.objects.create(lot=lot, user=author, text=text, is_seller=author.pk == lot.seller_id)
    message.user = author
    text_frame = dumps({"type": "CHAT_MESSAGE", "lot_id": lot.pk, **chat_payload(message)})
    transaction.on_commit(lambda: broadcast_chat(lot.pk, text_frame))
    return message


@transaction.atomic
def hide_chat_message(*, lot_id: int, message_id: int, actor) -> ChatMessage:
    """The lot's seller or staff hide one of its messages.

    Raises `lot_not_found`, `chat_message_not_found`, `not_lot_manager`, `account_inactive`, `session_ended`.
    """
    if not is_lot_visible(lot_id=lot_id, user=actor):
        raise NotFound("lot_not_found", "No such lot.")
    message = ChatMessage.objects.select_for_update().select_related("lot").filter(pk=message_id, lot_id=lot_id).first()
    if message is None:
        raise NotFound("chat_message_not_found", "No such message in this lot's chat.")
    ensure_can_manage(lot=message.lot, actor=actor)
    ensure_session_open(user=actor)
    if not message.hidden:
        message.hidden = True
        message.hidden_by = actor
        message.save(update_fields=["hidden", "hidden_by"])
        text_frame = dumps({"type": "CHAT_HIDDEN", "lot_id": message.lot_id, "id": message.pk})
        transaction.on_commit(lambda: broadcast_chat(message.lot_id, text_frame))
    return message
