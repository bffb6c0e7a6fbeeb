"""The lots app's writes, one module per topic; callers import them from here.

Every writer of a lot takes its row lock through `lock_lot` (`locks`), the same
lock the bid service takes, so a close and a bid never interleave.

- `catalogue`: creating, editing, deleting lots, staggering a sale's ends; `sales`: creating and editing sales;
- `lifecycle`: opening, closing, cancelling; `scheduling`: the clock's claims of due lots;
- `watchlist`; `registrations`: registering to bid in a sale, and staff's decisions.
"""

from lots.services.catalogue import create_lot, delete_lot, stagger_auction_lots, update_lot
from lots.services.lifecycle import cancel_lot, close_lot, finish_lot, open_lot
from lots.services.locks import ensure_can_manage, lock_lot
from lots.services.registrations import decide_registration, register_for_auction
from lots.services.sales import create_auction, update_auction
from lots.services.scheduling import (
    announce_next_ending_soon,
    close_due_lots,
    open_next_due_lot,
    settle_lot_if_due,
    visible_lot_settled,
)
from lots.services.watchlist import unwatch_lot, watch_lot

__all__ = [
    "announce_next_ending_soon",
    "cancel_lot",
    "close_due_lots",
    "close_lot",
    "create_auction",
    "create_lot",
    "decide_registration",
    "delete_lot",
    "ensure_can_manage",
    "finish_lot",
    "lock_lot",
    "open_lot",
    "open_next_due_lot",
    "register_for_auction",
    "settle_lot_if_due",
    "stagger_auction_lots",
    "unwatch_lot",
    "update_auction",
    "update_lot",
    "visible_lot_settled",
    "watch_lot",
]
