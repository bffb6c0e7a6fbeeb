"""A lot's chat: posting (plain text, rate-limited) and hiding by the seller or staff."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.services import ensure_session_open
from bids.events import broadcast_chat, chat_payload
from bids.models import ChatMessage
from lots.events import EventType, dumps
from lots.models import Lot, LotStatus
from lots.selectors import is_lot_visible, visible_to
from lots.services import ensure_can_manage
from ops.exceptions import InvalidInput, NotFound, RateLimited
from ops.ratelimit import take_allowance


def _take_chat_allowance(user) -> None:
    """Raises `rate_limited` past `CHAT_MESSAGES_PER_MINUTE` messages by one user, counted across processes."""
    wait = take_allowance(f"chat:{user.pk}", limit=settings.CHAT_MESSAGES_PER_MINUTE, window=60)
    if wait:
        raise RateLimited("rate_limited", "You are sending messages too fast; wait a minute.", retry_after=wait)


def storable_text(text: str) -> bool:
    """False for what JSON's "\\u0000" and lone "\\ud800" escapes decode to: PostgreSQL stores neither."""
    return "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text)


@transaction.atomic
def post_chat_message(*, lot_id: int, author, text: object) -> ChatMessage:
    """Post to a lot's room; broadcast after commit.

    Raises `invalid_text`, `text_too_long`, `lot_not_found`, `rate_limited`, `account_inactive`, `session_ended`.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("invalid_text", "A message needs some text.")
    if not storable_text(text):
        raise InvalidInput("invalid_text", "The text contains characters that cannot be stored.")
    text = text.strip()
    if len(text) > settings.CHAT_MAX_LENGTH:
        raise InvalidInput("text_too_long", f"A message has at most {settings.CHAT_MAX_LENGTH} characters.")
    lot = Lot.objects.filter(visible_to(author), pk=lot_id).first()
    if lot is None or lot.status == LotStatus.DRAFT:
        # Nobody chats on a draft, not even its seller; a hidden one is not found.
        raise NotFound("lot_not_found", "No such lot.")
    _take_chat_allowance(author)
    ensure_session_open(user=author)
    message = ChatMessage.objects.create(lot=lot, user=author, text=text, is_seller=author.pk == lot.seller_id)
    message.user = author
    text_frame = dumps({"type": EventType.CHAT_MESSAGE, "lot_id": lot.pk, **chat_payload(message)})
    transaction.on_commit(lambda: broadcast_chat(lot.pk, text_frame))
    return message


@transaction.atomic
def hide_chat_message(*, lot_id: int, message_id: int, actor) -> ChatMessage:
    """The lot's seller or staff hide one of its messages.

    Raises `lot_not_found`, `chat_message_not_found`, `not_lot_manager`, `account_inactive`, `session_ended`.
    """
    if not is_lot_visible(lot_id=lot_id, user=actor):
        raise NotFound("lot_not_found", "No such lot.")
    message = ChatMessage.objects.select_for_update().select_related("lot").filter(pk=message_id, lot_id=lot_id).first()
    if message is None:
        raise NotFound("chat_message_not_found", "No such message in this lot's chat.")
    ensure_can_manage(lot=message.lot, actor=actor)
    ensure_session_open(user=actor)
    if not message.hidden:
        message.hidden = True
        message.hidden_by = actor
        message.save(update_fields=["hidden", "hidden_by"])
        text_frame = dumps({"type": EventType.CHAT_HIDDEN, "lot_id": message.lot_id, "id": message.pk})
        transaction.on_commit(lambda: broadcast_chat(message.lot_id, text_frame))
    return message
