"""WebSocket bids on PostgreSQL run on threads of their own: a bid waiting for one lot's lock holds up no other lot."""

import threading

import pytest
from django.db import connection, transaction

from lots.models import Lot

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

LOCK_SECONDS = 10


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
        assert locked.wait(LOCK_SECONDS)
        await waiting.send({"type": "NEW_BID", "amount": "10.00", "request_id": "waits"})
        await other.send({"type": "NEW_BID", "amount": "10.00", "request_id": "free"})

        # On one shared thread these would wait behind the blocked bid, i.e. for the lock.
        frames = [await other.next(timeout=3) for _ in range(2)]
        assert {(f["type"], f.get("request_id")) for f in frames} == {("BID_ACCEPTED", "free"), ("NEW_BID", None)}
    finally:
        release.set()
        holder.join(LOCK_SECONDS)

    frames = [await waiting.next(timeout=LOCK_SECONDS) for _ in range(2)]
    assert {(f["type"], f.get("request_id")) for f in frames} == {("BID_ACCEPTED", "waits"), ("NEW_BID", None)}
