"""The bidding app's payloads: a bid as the room sees it, a bid's answer, a chat message."""

from __future__ import annotations

import logging
from typing import Any

from lots.events import lot_group
from ops import broadcasting

logger = logging.getLogger(__name__)


def bid_payload(bid, *, bidder_alias: str) -> dict[str, Any]:
    return {
        "id": bid.id,
        "amount": bid.amount,
        "bidder": bidder_alias,
        "created_at": bid.created_at,
        "is_proxy": bid.is_proxy,
    }


def bid_outcome_payload(outcome) -> dict[str, Any]:
    """An accepted bid's answer (a `services.BidOutcome`): the REST body, and BID_ACCEPTED's fields on a socket."""
    bid = outcome.bid
    return {
        "code": "accepted",
        "leading": outcome.leading,
        "replayed": outcome.replayed,
        "bid": {
            "id": bid.id,
            "amount": bid.amount,
            # Your alias on the lot: the room's frames name you by it.
            "bidder": outcome.alias,
            "max_amount": bid.max_amount,
            "is_proxy": bid.is_proxy,
            "created_at": bid.created_at,
        },
        "min_next_bid": outcome.lot_state["min_next_bid"],
        # With the lot's `seq` once the bid stood (for a replay, its `seq` now): the room's events up to it
        # include the bid. Not at the top: a frame with a top-level `seq` is a room event.
        "lot": {**outcome.lot_state, "seq": outcome.seq},
    }


def chat_payload(message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "user": message.user.username,
        "text": message.text,
        "is_seller": message.is_seller,
        "created_at": message.created_at,
    }


def broadcast_chat(lot_id: int, text: str) -> None:
    """Chat frames go to the room without a `seq`: they are not lot state."""
    try:
        broadcasting.publish([{"room": lot_group(lot_id), "kind": "text", "text": text}])
    except Exception:
        logger.exception("chat broadcast failed for lot %s", lot_id)
