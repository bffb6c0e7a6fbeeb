"""Reads of lots and auctions, shaped for their callers."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, Q, QuerySet

from lots.models import Auction, Lot, LotStatus, Registration


def lots_with_people() -> QuerySet[Lot]:
    """Lots with the users and sale their public state names, in one query."""
    return Lot.objects.select_related("seller", "high_bidder", "winner", "auction")


def list_public_lots() -> QuerySet[Lot]:
    """Lots anyone may see: everything but drafts."""
    return lots_with_people().exclude(status=LotStatus.DRAFT)


def visible_to(user) -> Q:
    """Which lots `user` may see, the one rule every path applies: drafts only by their seller and staff.

    A lot outside it is `lot_not_found` everywhere (REST and WebSocket), never
    a refusal that would confirm it exists.
    """
    if user.is_authenticated and user.is_staff:
        return Q()
    if user.is_authenticated:
        return ~Q(status=LotStatus.DRAFT) | Q(seller=user)
    return ~Q(status=LotStatus.DRAFT)


def list_visible_lots(*, user) -> QuerySet[Lot]:
    """Public lots, plus the user's own drafts (all drafts for staff)."""
    return lots_with_people().filter(visible_to(user))


def is_lot_visible(*, lot_id: int, user) -> bool:
    return Lot.objects.filter(visible_to(user), pk=lot_id).exists()


def get_lot(*, lot_id: int) -> Lot | None:
    return lots_with_people().filter(pk=lot_id).first()


def list_watchlist(*, user) -> QuerySet[Lot]:
    return list_visible_lots(user=user).filter(watches__user=user).order_by("-watches__created_at")


def list_won_lots(*, user) -> QuerySet[Lot]:
    return lots_with_people().filter(winner=user).order_by("-closed_at")


def list_auctions() -> QuerySet[Auction]:
    return Auction.objects.all()


def next_due_at() -> datetime | None:
    """The earliest time at which the clock has something to do (open, warn, close)."""
    lead = timedelta(seconds=settings.AUCTION_ENDING_SOON_SECONDS)
    times = [
        Lot.objects.filter(status=LotStatus.SCHEDULED).aggregate(t=Min("starts_at"))["t"],
        Lot.objects.filter(status=LotStatus.OPEN).aggregate(t=Min("ends_at"))["t"],
    ]
    warn_at = Lot.objects.filter(status=LotStatus.OPEN, ending_soon_sent_at__isnull=True).aggregate(t=Min("ends_at"))[
        "t"
    ]
    if warn_at is not None:
        times.append(warn_at - lead)
    return min((t for t in times if t is not None), default=None)


def list_user_registrations(*, user) -> QuerySet[Registration]:
    return Registration.objects.filter(user=user).select_related("auction").order_by("-created_at")


def list_participants(*, auction_slug: str) -> QuerySet[Registration]:
    return Registration.objects.filter(auction__slug=auction_slug).select_related("user").order_by("paddle_number")


def get_registration(*, auction_id: int | None, user) -> Registration | None:
    if auction_id is None or not user.is_authenticated:
        return None
    return Registration.objects.filter(auction_id=auction_id, user=user).first()
