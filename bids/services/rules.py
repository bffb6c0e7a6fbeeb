"""Who may bid on a lot, and with what: checked under the lot's lock, except the allowance (before it)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings

from accounts.exceptions import SessionEnded
from accounts.services import ensure_session_checks_pass
from bids import statements
from bids.exceptions import BidderRefused, BidRejected, BidsRateLimited, InvalidBid
from lots.models import Lot, LotStatus, RegistrationStatus
from lots.pricing import currency_places
from lots.selectors import bidding_barred
from ops.ratelimit import take_allowance

BARRED_MESSAGES = {"own_lot": "You cannot bid on your own lot.", "staff_cannot_bid": "Staff accounts may not bid."}


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
    barred = bidding_barred(lot, bidder)
    if barred:
        raise BidRejected(barred, BARRED_MESSAGES[barred])
    if lot.auction_id and lot.auction.requires_registration:
        _ensure_approved(registration)


def ensure_bidder_active(bidder, state: statements.Bidder) -> None:
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


def check_currency_places(lot: Lot, *amounts: Decimal | None) -> None:
    places = currency_places(lot.currency)
    for value in amounts:
        if value is not None and value != value.quantize(Decimal(1).scaleb(-places)):
            raise InvalidBid("invalid_amount", f"{lot.currency} amounts take {places} decimal places.")


def take_bid_allowance(bidder) -> None:
    """Raises `rate_limited` past `BIDS_PER_MINUTE` bids and buy-nows by one user, counted across processes.

    Taken before the lot's lock, so a throttled request never waits for or
    holds it; retries of an idempotency key count too (each would take the lock).
    """
    wait = take_allowance(f"bids:{bidder.pk}", limit=settings.BIDS_PER_MINUTE, window=60)
    if wait:
        raise BidsRateLimited("rate_limited", f"Too many bids; retry in {wait} s.", retry_after=wait)
