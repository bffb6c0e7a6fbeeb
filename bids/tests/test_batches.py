"""Handing a bid from a request's thread to the server's loop (`bids.batches`)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from bids import batches
from bids.services import BidRequest
from ops.exceptions import Unavailable

GENEROUS = 60


def test_a_bid_waiting_from_a_thread_when_the_servers_loop_stops_is_answered_unavailable(monkeypatch):
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def never_decided(lot_id, request, answer):
        pass

    monkeypatch.setattr(batches, "_hand_over", never_decided)
    request = BidRequest(bidder=None, amount=Decimal("10.00"), max_amount=None, idempotency_key=None, request_hash="")
    batches.take_bids_from_threads(loop)
    try:
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(batches.place_bid_from_thread, lot_id=1, request=request)
            deadline = time.monotonic() + GENEROUS
            while not batches._answers:
                assert time.monotonic() < deadline, "the bid never reached the loop"
                time.sleep(0.01)
            loop.call_soon_threadsafe(loop.stop)
            runner.join(GENEROUS)
            batches.take_bids_from_threads(None)
            with pytest.raises(Unavailable) as refused:
                answer.result(timeout=GENEROUS)
        assert (refused.value.code, refused.value.status_code) == ("service_unavailable", 503)
        assert not batches._answers
    finally:
        batches.take_bids_from_threads(None)
        loop.close()
