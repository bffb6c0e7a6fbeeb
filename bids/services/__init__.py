"""The bidding app's writes, one module per topic; callers import them from here.

- `bidding`: placing bids (one, or a batch under one lock and one commit) and buying now;
- `requests`: a bid as sent and as answered; `rules`: who may bid, with what;
- `planning`: the rows a bid makes (proxy bidding, the reserve, soft close);
- `idempotency`: retried keys; `voiding`: staff voiding a bidder's bids; `chat`: a lot's chat.
"""

from bids.services.bidding import buy_now, place_bid, place_bid_request, place_bids
from bids.services.chat import hide_chat_message, post_chat_message, storable_text
from bids.services.requests import BidOutcome, BidRequest, bid_request
from bids.services.voiding import void_bids, void_participant_bids

__all__ = [
    "BidOutcome",
    "BidRequest",
    "bid_request",
    "buy_now",
    "hide_chat_message",
    "place_bid",
    "place_bid_request",
    "place_bids",
    "post_chat_message",
    "storable_text",
    "void_bids",
    "void_participant_bids",
]
