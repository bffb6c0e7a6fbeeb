"""Reads of lots and auctions, shaped for their callers."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, OuterRef, Q, QuerySet, Subquery

from lots.models import Auction, Lot, LotAlias, LotStatus, Registration


def alias_of(lot_ref: str, user_ref: str) -> Subquery:
    """A subquery for the public alias of the bidder `user_ref` on the lot `lot_ref` (outer field names)."""
    return Subquery(LotAlias.objects.filter(lot_id=OuterRef(lot_ref), user_id=OuterRef(user_ref)).values("label")[:1])


def get_aliases(*, lot_id: int, user_ids: list[int]) -> dict[int, str]:
    """{user id: public alias} of these bidders on the lot; those who never bid on it are absent."""
    return dict(LotAlias.objects.filter(lot_id=lot_id, user_id__in=user_ids).values_list("user_id", "label"))


def lots_with_people() -> QuerySet[Lot]:
    """Lots with the users and sale their public state names, and the aliases the public sees, in one query."""
    return Lot.objects.select_related("seller", "high_bidder", "winner", "auction").annotate(
        high_bidder_alias=alias_of("pk", "high_bidder_id"), winner_alias=alias_of("pk", "winner_id")
    )


def list_public_lots() -> QuerySet[Lot]:
    """Lots anyone may see: everything but drafts."""
    return lots_with_people().exclude(status=LotStatus.DRAFT)


def list_visible_lots(*, user) -> QuerySet[Lot]:
    """Public lots, plus the user's own drafts (all drafts for staff), each with the user's alias on it."""
    lots = lots_with_people()
    if user.is_authenticated:
        lots = lots.annotate(
            my_alias=Subquery(LotAlias.objects.filter(lot_id=OuterRef("pk"), user_id=user.pk).values("label")[:1])
        )
    if user.is_authenticated and user.is_staff:
        return lots
    if user.is_authenticated:
        return lots.filter(~Q(status=LotStatus.DRAFT) | Q(seller=user))
    return lots.exclude(status=LotStatus.DRAFT)


def get_lot(*, lot_id: int) -> Lot | None:
    return lots_with_people().filter(pk=lot_id).first()


def list_watchlist(*, user) -> QuerySet[Lot]:
    return lots_with_people().filter(watches__user=user).order_by("-watches__created_at")


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
