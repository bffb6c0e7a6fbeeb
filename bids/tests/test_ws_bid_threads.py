"""WebSocket bids on PostgreSQL run on threads of their own: a bid waiting for one lot's lock holds up no other lot."""

import threading

import pytest
from django.db import connection, transaction

from lots.models import Lot

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# The other writer holds the lock this long at most: longer than a bid on the free lot may take
# to be answered, so that bid is answered while the lock is still held, or the test fails.
LOCK_SECONDS = 90
# A frame that must come; generous for a loaded machine.
ANSWER_SECONDS = 30


def hold_row_lock(lot_id: int, locked: threading.Event, release: threading.Event) -> None:
    """Another writer holding the lot's row lock (like a slow bid from another process)."""
    try:
        with transaction.atomic():
            Lot.objects.select_for_update().get(pk=lot_id)
            locked.set()
            release.wait(LOCK_SECONDS)
    finally:
        connection.close()


async def test_a_bid_blocked_on_one_lots_lock_does_not_hold_up_a_bid_on_another_lot(ws, new_lot, bidder, other_bidder):
    busy, free = await new_lot(starting_price="10.00"), await new_lot(starting_price="10.00")
    waiting, _ = await ws.watch(busy, bidder)
    other, _ = await ws.watch(free, other_bidder)
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_row_lock, args=(busy.pk, locked, release))
    holder.start()
    try:
        assert locked.wait(ANSWER_SECONDS)
        await waiting.send({"type": "NEW_BID", "amount": "10.00", "request_id": "waits"})
        await other.send({"type": "NEW_BID", "amount": "10.00", "request_id": "free"})

        # On one shared thread these would wait behind the blocked bid, i.e. until the lock is
        # released, which happens only after them: the wait would time out.
        frames = [await other.next(timeout=ANSWER_SECONDS) for _ in range(2)]
        assert {(f["type"], f.get("request_id")) for f in frames} == {("BID_ACCEPTED", "free"), ("NEW_BID", None)}
        still_locked = holder.is_alive() and not release.is_set()
    finally:
        release.set()
        holder.join(LOCK_SECONDS)

    assert still_locked, "the free lot's bid was answered only once the other lot's lock was released"
    frames = [await waiting.next(timeout=ANSWER_SECONDS) for _ in range(2)]
    assert {(f["type"], f.get("request_id")) for f in frames} == {("BID_ACCEPTED", "waits"), ("NEW_BID", None)}
