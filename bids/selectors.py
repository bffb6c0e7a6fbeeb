"""Reads of bids and of the lots' chat."""

from django.db.models import QuerySet

from bids.models import Bid, ChatMessage
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


def list_chat_messages(*, lot_id: int) -> QuerySet[ChatMessage]:
    """A lot's visible chat, newest first."""
    return ChatMessage.objects.filter(lot_id=lot_id, hidden=False).select_related("user").order_by("-id")
