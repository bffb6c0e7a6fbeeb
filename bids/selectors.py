"""Reads of bids and of a lot's event log."""

from django.db.models import QuerySet

from bids.models import Bid, ChatMessage, LotEvent, Notification
from lots.selectors import alias_of


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


def list_chat_messages(*, lot_id: int) -> QuerySet[ChatMessage]:
    """A lot's visible chat, newest first."""
    return ChatMessage.objects.filter(lot_id=lot_id, hidden=False).select_related("user").order_by("-id")
