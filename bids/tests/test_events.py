"""The outbox: public changes are numbered LotEvents, broadcast only after commit."""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from bids.exceptions import BidRejected
from bids.services import buy_now
from lots.models import Auction, Lot, LotEvent
from lots.services import close_lot, open_lot, update_lot
from testsupport.bidding import bid, event_types, lot_events

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def test_a_lots_public_changes_are_numbered_without_gaps(make_lot, bidder, other_bidder, seller):
    ends_at = timezone.now() + timedelta(hours=1)
    lot = make_lot(draft=True, ends_at=ends_at, soft_close_seconds=300, reserve_price="20.00")

    open_lot(lot_id=lot.pk, actor=seller)
    update_lot(lot_id=lot.pk, actor=seller, changes={"title": "Art deco lamp, signed"})
    bid(lot, bidder, "10.00", max_amount="15.00")
    bid(lot, bidder, "10.00", max_amount="18.00")  # private: no number
    bid(lot, other_bidder, "11.00", max_amount="40.00", now=ends_at - timedelta(seconds=60))
    close_lot(lot_id=lot.pk, actor=seller)

    assert event_types(lot) == [
        "LOT_OPENED",
        "LOT_UPDATED",
        "NEW_BID",
        "NEW_BID",
        "NEW_BID",
        "LOT_EXTENDED",
        "AUCTION_ENDED",
    ]
    events = lot_events(lot)
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert list(LotEvent.objects.filter(lot=lot).order_by("seq").values_list("seq", flat=True)) == list(range(1, 8))
    assert all(e["lot_id"] == lot.pk for e in events)
    assert Lot.objects.get(pk=lot.pk).seq == 7


def test_each_lot_counts_its_own_events(make_lot, bidder):
    first, second = make_lot(), make_lot()

    bid(first, bidder, "10.00")
    bid(second, bidder, "10.00")
    bid(first, bidder, "10.00", max_amount="20.00")

    assert [e["seq"] for e in lot_events(first)] == [1]
    assert [e["seq"] for e in lot_events(second)] == [1]


def test_events_are_broadcast_only_after_commit(make_lot, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        bid(lot, bidder, "10.00")

    assert len(callbacks) == 1
    assert LotEvent.objects.filter(lot=lot).count() == 1
    assert inbox.lot_messages(lot) == []

    callbacks[0]()

    [message] = inbox.lot_messages(lot)
    stored = LotEvent.objects.get(lot=lot)
    assert message == {"type": "lot.event", "lot_id": lot.pk, "seq": 1, "text": stored.text}


def test_broadcast_frames_are_the_stored_frames_in_order(
    make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot()
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00", max_amount="30.00")
    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, other_bidder, "12.00")

    messages = inbox.lot_messages(lot)
    assert [m["seq"] for m in messages] == [1, 2, 3]
    assert [m["text"] for m in messages] == list(
        LotEvent.objects.filter(lot=lot).order_by("seq").values_list("text", flat=True)
    )
    assert json.loads(messages[-1]["text"])["bid"]["is_proxy"] is True


def test_lots_in_a_sale_are_broadcast_to_the_sales_room_too(
    make_lot, bidder, inbox, django_capture_on_commit_callbacks
):
    sale = Auction.objects.create(title="Spring sale", slug="spring")
    lot = make_lot(auction=sale)
    inbox.join("auction.spring")

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00")

    [message] = inbox.drain("auction.spring")
    assert (message["lot_id"], message["seq"]) == (lot.pk, 1)


def test_nothing_is_stored_or_broadcast_when_the_transaction_rolls_back(
    make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(buy_now_price="100.00")
    bid(lot, bidder, "10.00")
    inbox.watch_lot(lot)
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(Boom), transaction.atomic():
        bid(lot, other_bidder, "20.00")
        buy_now(lot_id=lot.pk, buyer=other_bidder)
        raise Boom

    assert callbacks == []
    assert inbox.lot_messages(lot) == []
    assert inbox.user_messages(bidder) == []
    lot.refresh_from_db()
    assert (lot.seq, lot.bid_count, lot.status) == (1, 1, "open")
    assert event_types(lot) == ["NEW_BID"]


def test_a_rejected_bid_queues_nothing(make_lot, bidder, other_bidder, django_capture_on_commit_callbacks):
    lot = make_lot()
    bid(lot, bidder, "10.00")

    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(BidRejected, match="minimum"):
        bid(lot, other_bidder, "10.00")

    assert callbacks == []


def test_private_notifications_wait_for_the_commit_too(
    make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        bid(lot, other_bidder, "15.00")

    assert inbox.user_messages(bidder) == []
    callbacks[0]()
    assert inbox.user_types(bidder) == ["OUTBID"]
