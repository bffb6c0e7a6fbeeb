"""A retried `Idempotency-Key` answers with its first outcome; the same key with another request is a conflict."""

from __future__ import annotations

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services.requests import BidOutcome
from lots.events import lot_price_state
from lots.selectors import get_aliases


def replay(*, bidder, idempotency_key: str | None, request_hash: str) -> BidOutcome | None:
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
