"""Registration to bid in a sale: a request, then the staff's (or the sale's automatic) decision."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from lots.events import EventType, notify_user
from lots.exceptions import LotActionRefused, NotLotManager
from lots.models import Auction, Registration, RegistrationStatus
from ops.exceptions import NotFound


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
        EventType.REGISTRATION_DECIDED,
        auction=auction.slug,
        title=auction.title,
        status=new_status,
        paddle_number=registration.paddle_number,
    )
    return registration
