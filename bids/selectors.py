"""Reads of bids and of the lots' chat."""

from datetime import datetime

from django.db import models
from django.db.models import Case, Count, F, Max, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce

from bids.models import Bid, ChatMessage
from lots.models import Lot, LotStatus
from lots.selectors import alias_of, with_effective_status


def list_public_bids(*, lot_id: int) -> QuerySet[Bid]:
    """A lot's standing bids as the public sees them: newest first, no private max raises, nothing voided,
    each with its bidder's alias on the lot (`bidder_alias`)."""
    return (
        Bid.objects.filter(lot_id=lot_id, raises_max_only=False, void_reason="")
        .select_related("bidder")
        .annotate(bidder_alias=alias_of("lot_id", "bidder_id"))
        .order_by("-id")
    )


def list_user_bids(*, user) -> QuerySet[Bid]:
    return Bid.objects.filter(bidder=user).select_related("lot").order_by("-id")


class Standing(models.TextChoices):
    """Where a bidder stands on a lot they bid on."""

    LEADING = "leading", "Winning"
    OUTBID = "outbid", "Outbid"
    WON = "won", "Won"
    LOST = "lost", "Lost"
    CANCELLED = "cancelled", "Cancelled"


def list_user_bidding(*, user, now: datetime) -> QuerySet[Lot]:
    """One row per lot where `user` has a standing bid, with their standing on it at `now`.

    Lots whose bids of theirs were all voided are left out: staff took those bids back. Each lot carries
    `effective_status`, `standing`, `my_highest_bid`, `my_max_amount` (the most they authorized: their
    highest maximum, or their highest bid when they set none) and `my_bid_count` (their public bids).
    Open lots first, ending soonest; then ended ones, the latest to end first. One query, however many lots.
    """
    # One filter() call: the aggregates below read the same join, so they count this user's standing bids only.
    lots = with_effective_status(Lot.objects.filter(bids__bidder=user, bids__void_reason=""), now=now)
    is_open = Q(effective_status=LotStatus.OPEN)
    won = Q(winner=user) | Q(
        status=LotStatus.OPEN,
        high_bidder=user,
        # Ended, not yet settled by a clock: the leader wins once the reserve is met (`effective_winner`).
        effective_status=LotStatus.CLOSED,
    ) & (Q(reserve_price__isnull=True) | Q(current_price__gte=F("reserve_price")))
    return lots.annotate(
        my_highest_bid=Max("bids__amount"),
        # Own bids keep what was sent (`submitted_amount`); the system's proxy rows add nothing to it.
        my_max_amount=Max(Coalesce("bids__max_amount", "bids__submitted_amount")),
        my_bid_count=Count("bids", filter=Q(bids__raises_max_only=False)),
        standing=Case(
            When(status=LotStatus.CANCELLED, then=Value(Standing.CANCELLED)),
            When(is_open & Q(high_bidder=user), then=Value(Standing.LEADING)),
            When(is_open, then=Value(Standing.OUTBID)),
            When(won, then=Value(Standing.WON)),
            default=Value(Standing.LOST),
            output_field=models.CharField(),
        ),
        open_ends_at=Case(When(is_open, then=F("ends_at"))),
        ended_at=Case(When(~is_open, then=Coalesce("closed_at", "ends_at"))),
    ).order_by(F("open_ends_at").asc(nulls_last=True), F("ended_at").desc(nulls_last=True), "-id")


def list_chat_messages(*, lot_id: int) -> QuerySet[ChatMessage]:
    """A lot's visible chat, newest first."""
    return ChatMessage.objects.filter(lot_id=lot_id, hidden=False).select_related("user").order_by("-id")
