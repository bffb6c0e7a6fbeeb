"""Sales (auctions): making and editing them. Their lots' times are `catalogue`'s (`stagger_auction_lots`)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from lots.models import Auction
from ops.exceptions import InvalidInput


def _ensure_schedule(auction: Auction) -> None:
    """Raises `invalid_schedule`: a sale ends after it starts (the database's `auction_ends_after_start` would
    refuse it with an IntegrityError)."""
    if auction.starts_at is not None and auction.ends_at is not None and auction.ends_at <= auction.starts_at:
        message = "The sale must end after it starts."
        raise InvalidInput("invalid_schedule", f"ends_at: {message}", errors={"ends_at": [message]})


@transaction.atomic
def create_auction(**fields: Any) -> Auction:
    """A new sale (staff). Raises `invalid_schedule`."""
    auction = Auction(**fields)
    _ensure_schedule(auction)
    auction.save()
    return auction


@transaction.atomic
def update_auction(*, auction_id: int, changes: dict[str, Any]) -> Auction:
    """Change a sale's own fields (staff), its row locked. Raises `invalid_schedule`."""
    auction = Auction.objects.select_for_update().get(pk=auction_id)
    for field, value in changes.items():
        setattr(auction, field, value)
    _ensure_schedule(auction)
    auction.save(update_fields=list(changes))
    return auction
