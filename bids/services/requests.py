"""A bid as its bidder sent it (`BidRequest`, amounts parsed) and as it is answered (`BidOutcome`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bids.exceptions import InvalidBid
from bids.models import Bid
from lots.exceptions import InvalidAmount
from lots.models import Lot
from lots.pricing import parse_money


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


def hash_request(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def parse_amounts(amount: object, max_amount: object | None) -> tuple[Decimal, Decimal | None]:
    try:
        parsed = parse_money(amount, field="amount")
        parsed_max = None if max_amount is None else parse_money(max_amount, field="max_amount")
    except InvalidAmount as exc:
        raise InvalidBid(exc.code, exc.message, **exc.extra) from exc
    if parsed_max is not None and parsed_max < parsed:
        raise InvalidBid("invalid_amount", "max_amount must be at least amount.", field="max_amount")
    return parsed, parsed_max


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
    parsed_amount, parsed_max = parse_amounts(amount, max_amount)
    return BidRequest(
        bidder=bidder,
        amount=parsed_amount,
        max_amount=parsed_max,
        idempotency_key=idempotency_key,
        request_hash=hash_request("bid", lot_id, parsed_amount, parsed_max),
    )
