"""Reads of lots and auctions, shaped for their callers."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, CharField, F, Min, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from lots.models import Auction, Lot, LotAlias, LotEvent, LotStatus, Notification, Registration


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
    """Public lots, plus the user's own drafts (all drafts for staff), each with the user's alias on it.

    `price` is what a bidder compares, to filter and sort by: the current price, or the starting price before any bid.
    """
    lots = lots_with_people().filter(visible_to(user)).annotate(price=Coalesce("current_price", "starting_price"))
    if user.is_authenticated:
        lots = lots.annotate(
            my_alias=Subquery(LotAlias.objects.filter(lot_id=OuterRef("pk"), user_id=user.pk).values("label")[:1])
        )
    return lots


def bidding_barred(lot: Lot, user) -> str | None:
    """Why `user` may never bid on `lot`, whatever its state: `own_lot` or `staff_cannot_bid`; None if nothing bars them.

    The bid path applies it under the lot's lock; the lot's page uses it to say so before anyone clicks.
    """
    if lot.seller_id == user.pk:
        return "own_lot"
    if user.is_staff and not settings.AUCTION_STAFF_CAN_BID:
        return "staff_cannot_bid"
    return None


def is_lot_visible(*, lot_id: int, user) -> bool:
    return Lot.objects.filter(visible_to(user), pk=lot_id).exists()


def get_lot(*, lot_id: int) -> Lot | None:
    return lots_with_people().filter(pk=lot_id).first()


def list_watchlist(*, user) -> QuerySet[Lot]:
    return list_visible_lots(user=user).filter(watches__user=user).order_by("-watches__created_at")


# --- A lot's effective state: what it is at `now`, whether or not a clock has acted yet.
# A lot whose end has passed is over: lists, filters and counts never show it
# as open, even while every clock is down (a detail read then settles it).


def _ended_unsettled(now: datetime) -> Q:
    return Q(status__in=(LotStatus.OPEN, LotStatus.SCHEDULED), ends_at__lte=now)


def effective_status(lot: Lot, *, now: datetime) -> str:
    """The lot's status at `now`: `closed` once its end has passed, settled or not."""
    if lot.status in (LotStatus.OPEN, LotStatus.SCHEDULED) and lot.ends_at <= now:
        return LotStatus.CLOSED
    return lot.status


def effective_winner(lot: Lot, *, now: datetime):
    """The winner at `now`: the leader of an ended, unsettled lot whose reserve is met wins it."""
    if lot.winner_id:
        return lot.winner
    if lot.status == LotStatus.OPEN and lot.ends_at <= now and lot.bid_count and lot.reserve_met:
        return lot.high_bidder
    return None


def with_effective_status(lots: QuerySet[Lot], *, now: datetime) -> QuerySet[Lot]:
    """`effective_status` as a column, for filters and counts."""
    return lots.annotate(
        effective_status=Case(
            When(_ended_unsettled(now), then=Value(LotStatus.CLOSED)),
            default=F("status"),
            output_field=CharField(),
        )
    )


def list_won_lots(*, user, now: datetime | None = None) -> QuerySet[Lot]:
    """Lots the user won, ended but not yet settled by a clock included, most recent first."""
    now = now or timezone.now()
    reserve_met = Q(reserve_price__isnull=True) | Q(current_price__gte=F("reserve_price"))
    leading_at_end = Q(status=LotStatus.OPEN, ends_at__lte=now, high_bidder=user, bid_count__gt=0) & reserve_met
    return (
        lots_with_people()
        .filter(Q(winner=user) | leading_at_end)
        .order_by(Coalesce("closed_at", "ends_at").desc(), "-id")
    )


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


def list_events_since(*, lot_id: int, since: int, limit: int) -> list[str] | None:
    """The stored frames after `since`, in order; None if more than `limit` are missing."""
    texts = list(
        LotEvent.objects.filter(lot_id=lot_id, seq__gt=since)
        .order_by("seq")
        .values_list("text", flat=True)[: limit + 1]
    )
    return None if len(texts) > limit else texts


def list_user_notifications(*, user) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).order_by("-id")
