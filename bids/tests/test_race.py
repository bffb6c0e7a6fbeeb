"""Races run for real: threads against PostgreSQL, then invariants on what it holds.

Each thread takes its own connection from the pool and gives it back after
every attempt, so more threads than pooled connections can bid.
"""

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise

import pytest
from django.db import connection, transaction
from django.utils import timezone

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services import place_bid
from lots.events import lot_min_next_bid
from lots.exceptions import LotActionRefused
from lots.models import Lot, LotAlias, LotEvent, LotStatus
from lots.pricing import increment_for
from lots.services import close_lot
from testsupport.bidding import replay_leaders, run_threads

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

THREADS = 50
BIDS_PER_THREAD = 20
RETRYABLE = ("bid_too_low", "already_leading")
# Bidders inside a transaction at once. Every one more only adds a stale
# `bid_too_low` per accepted bid (GIL-bound: 8 take ~15-30 s on two busy
# cores, the pool's 20 twice that).
AT_ONCE = 8
# A stuck race fails instead of hanging.
GIVE_UP_AFTER = 120


def bid_at_the_minimum(lot_id: int, user, count: int, at_once: threading.Semaphore) -> dict:
    """Place `count` bids at the minimum next bid read fresh, retrying when beaten to it.

    A bidder who reads that they lead raises their own maximum instead, so the
    last bidder standing is never stuck with `already_leading`.
    """
    placed, retries = 0, Counter()
    deadline = time.monotonic() + GIVE_UP_AFTER
    while placed < count:
        assert time.monotonic() < deadline, f"{user} placed {placed} of {count} bids: no progress"
        with at_once:
            try:
                lot = Lot.objects.get(pk=lot_id)
                amount = lot_min_next_bid(lot)
                max_amount = None
                if lot.high_bidder_id == user.pk:
                    max_amount = str(max(amount, lot.high_max_amount + increment_for(lot.high_max_amount)))
                place_bid(lot_id=lot_id, bidder=user, amount=str(amount), max_amount=max_amount)
            except BidRejected as exc:
                if exc.code not in RETRYABLE:
                    raise
                retries[exc.code] += 1
                continue
            finally:
                # Give the connection back to the pool between attempts.
                connection.close()
        placed += 1
    return {"placed": placed, "retries": retries}


def test_concurrent_bidders_leave_a_consistent_lot(make_lot, make_user):
    lot = make_lot(starting_price="1.00", ends_at=timezone.now() + timedelta(hours=1))
    users = [make_user(f"racer{i:02d}") for i in range(THREADS)]

    started = time.monotonic()
    at_once = threading.Semaphore(AT_ONCE)
    results = run_threads(bid_at_the_minimum, [(lot.pk, user, BIDS_PER_THREAD, at_once) for user in users])
    elapsed = time.monotonic() - started

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == [], errors[:3]
    assert all(r["placed"] == BIDS_PER_THREAD for r in results)

    lot = Lot.objects.get(pk=lot.pk)
    bids = list(Bid.objects.filter(lot=lot).order_by("id"))
    public = [b for b in bids if not b.raises_max_only]
    # One row of their own per accepted call, for every thread.
    own_rows = Counter(b.bidder_id for b in bids if not b.is_proxy)
    assert own_rows == {user.pk: BIDS_PER_THREAD for user in users}

    amounts = [b.amount for b in public]
    assert len(set(amounts)) == len(amounts), "two public bids at the same price"
    assert all(a < b for a, b in pairwise(amounts)), "the price went down"

    assert lot.bid_count == len(public)
    assert lot.current_price == public[-1].amount
    steps = replay_leaders(bids)
    _, leader, ceiling = steps[-1]
    assert lot.high_bidder_id == leader
    assert lot.high_max_amount == ceiling

    events = list(LotEvent.objects.filter(lot=lot).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(public) + 1))
    assert lot.seq == len(public)
    frames = [json.loads(e.text) for e in events]
    assert [f["bid"]["id"] for f in frames] == [b.id for b in public]
    assert [Decimal(f["lot"]["current_price"]) for f in frames] == amounts
    # Exactly one leader at every step, the one the replay names.
    aliases = dict(LotAlias.objects.filter(lot=lot).values_list("user_id", "label"))
    leaders = [aliases[leader] for b, leader, _ in steps if not b.raises_max_only]
    assert [f["lot"]["high_bidder"] for f in frames] == leaders
    assert lot.status == LotStatus.OPEN

    retries = sum((r["retries"] for r in results), Counter())
    print(
        f"\n{THREADS}x{BIDS_PER_THREAD} bids: {len(public)} public, {len(bids)} rows, {dict(retries)}, {elapsed:.1f}s"
    )


def wait_until_someone_waits_for_a_lock(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("nobody waited for the lot's lock")


def while_a_new_leader_holds_the_lock(lot, leader, action):
    """Run `action` in a thread that waits for the lot's lock while `leader` takes the lead."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        with transaction.atomic():
            place_bid(lot_id=lot.pk, bidder=leader, amount="11.00", max_amount="50.00")
            future = pool.submit(lambda: (action(), connection.close())[0])
            wait_until_someone_waits_for_a_lock()
        return future.result(timeout=30)


def test_close_waiting_for_the_lock_sees_the_new_leader(make_lot, bidder, other_bidder, seller):
    # PostgreSQL re-reads a row it waited to lock, but not rows joined to it:
    # the closer must not decide the winner from the leader it first saw.
    lot = make_lot()
    place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    closed = while_a_new_leader_holds_the_lock(lot, other_bidder, lambda: close_lot(lot_id=lot.pk, actor=seller))

    assert (closed.winner, closed.final_price) == (other_bidder, Decimal("11.00"))
    lot.refresh_from_db()
    assert (lot.winner, lot.high_bidder) == (other_bidder, other_bidder)


def test_bid_waiting_for_the_lock_faces_the_new_leader(make_lot, bidder, other_bidder, third_bidder):
    lot = make_lot()
    place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    outcome = while_a_new_leader_holds_the_lock(
        lot, other_bidder, lambda: place_bid(lot_id=lot.pk, bidder=third_bidder, amount="12.00")
    )

    # bob's maximum (50.00) answers carol's 12.00 at once.
    assert not outcome.leading
    lot.refresh_from_db()
    assert (lot.high_bidder, lot.current_price, lot.high_max_amount) == (
        other_bidder,
        Decimal("12.50"),
        Decimal("50.00"),
    )


def test_concurrent_closes_close_once(make_lot, make_user, seller):
    lot = make_lot()
    place_bid(lot_id=lot.pk, bidder=make_user("early"), amount="10.00")

    results = run_threads(lambda: close_lot(lot_id=lot.pk, actor=seller), [()] * 10)

    closed = [r for r in results if isinstance(r, Lot)]
    refused = [r for r in results if isinstance(r, LotActionRefused)]
    assert len(closed) == 1
    assert len(refused) == 9
    assert {r.code for r in refused} == {"lot_closed"}
    assert list(LotEvent.objects.filter(lot=lot).values_list("type", flat=True)) == ["NEW_BID", "AUCTION_ENDED"]


def test_bids_racing_a_close_never_land_after_it(make_lot, make_user, seller):
    lot = make_lot(starting_price="1.00")
    users = [make_user(f"late{i}") for i in range(15)]
    place_bid(lot_id=lot.pk, bidder=users[0], amount="1.00")

    at_once = threading.Semaphore(AT_ONCE)

    def act(user):
        if user is None:
            time.sleep(0.05)
            return close_lot(lot_id=lot.pk, actor=seller)
        return bid_at_the_minimum(lot.pk, user, 50, at_once)

    results = run_threads(act, [(u,) for u in [*users, None]])

    assert isinstance(results[-1], Lot)
    assert {r.code for r in results[:-1] if isinstance(r, Exception)} <= {"lot_closed"}
    lot = Lot.objects.get(pk=lot.pk)
    public = list(Bid.objects.filter(lot=lot, raises_max_only=False).order_by("id"))
    assert lot.status == LotStatus.CLOSED
    assert lot.bid_count == len(public)
    assert (lot.winner_id, lot.final_price) == (lot.high_bidder_id, lot.current_price)
    assert lot.final_price == public[-1].amount
    types = list(LotEvent.objects.filter(lot=lot).order_by("seq").values_list("type", flat=True))
    assert types == ["NEW_BID"] * len(public) + ["AUCTION_ENDED"]


def test_one_key_sent_many_times_at_once_bids_once(make_lot, bidder):
    lot = make_lot()

    results = run_threads(
        lambda: place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00", idempotency_key="same"), [()] * 10
    )

    assert not [r for r in results if isinstance(r, Exception)]
    assert sum(not r.replayed for r in results) == 1
    assert len({r.bid.pk for r in results}) == 1
    assert Bid.objects.filter(lot=lot).count() == 1
    assert Lot.objects.get(pk=lot.pk).seq == 1
