"""Soft close (rule 5): a bid in the last seconds moves the end, up to the hard end."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from bids.exceptions import BidRejected
from bids.services import buy_now
from lots.models import Lot
from testsupport.bidding import bid, event_types, lot_events

pytestmark = pytest.mark.django_db

WINDOW = 120


@pytest.fixture
def closing_lot(make_lot):
    ends_at = timezone.now() + timedelta(hours=1)
    return make_lot(
        starting_price="10.00", ends_at=ends_at, hard_ends_at=ends_at + timedelta(minutes=30), soft_close_seconds=WINDOW
    )


def test_bid_in_the_window_extends_the_end(closing_lot, bidder):
    now = closing_lot.ends_at - timedelta(seconds=30)

    outcome = bid(closing_lot, bidder, "10.00", now=now)

    new_end = now + timedelta(seconds=WINDOW)
    assert outcome.lot.ends_at == new_end
    assert Lot.objects.get(pk=closing_lot.pk).ends_at == new_end
    new_bid, extended = lot_events(closing_lot)
    assert (new_bid["type"], new_bid["seq"], extended["type"], extended["seq"]) == ("NEW_BID", 1, "LOT_EXTENDED", 2)
    # Frames carry times to the millisecond.
    assert parse_datetime(extended["ends_at"]) == new_end.replace(microsecond=new_end.microsecond // 1000 * 1000)
    # The NEW_BID frame already carries the end it leads to.
    assert new_bid["lot"]["ends_at"] == extended["ends_at"]


def test_extended_lot_takes_bids_after_its_original_end(closing_lot, bidder, other_bidder):
    original_end = closing_lot.ends_at
    bid(closing_lot, bidder, "10.00", now=original_end - timedelta(seconds=1))

    outcome = bid(closing_lot, other_bidder, "10.50", now=original_end + timedelta(seconds=60))

    assert outcome.leading
    assert outcome.lot.ends_at == original_end + timedelta(seconds=60 + WINDOW)


def test_extension_never_passes_the_hard_end(make_lot, bidder):
    ends_at = timezone.now() + timedelta(hours=1)
    lot = make_lot(ends_at=ends_at, hard_ends_at=ends_at + timedelta(seconds=45), soft_close_seconds=WINDOW)

    outcome = bid(lot, bidder, "10.00", now=ends_at - timedelta(seconds=10))

    assert outcome.lot.ends_at == ends_at + timedelta(seconds=45)
    assert event_types(lot) == ["NEW_BID", "LOT_EXTENDED"]


def test_no_extension_once_the_end_is_the_hard_end(make_lot, bidder, other_bidder):
    ends_at = timezone.now() + timedelta(hours=1)
    lot = make_lot(ends_at=ends_at, hard_ends_at=ends_at, soft_close_seconds=WINDOW)

    outcome = bid(lot, bidder, "10.00", now=ends_at - timedelta(seconds=10))

    assert outcome.lot.ends_at == ends_at
    assert event_types(lot) == ["NEW_BID"]


def test_bid_before_the_window_does_not_extend(closing_lot, bidder):
    outcome = bid(closing_lot, bidder, "10.00", now=closing_lot.ends_at - timedelta(seconds=WINDOW))

    assert outcome.lot.ends_at == closing_lot.ends_at
    assert event_types(closing_lot) == ["NEW_BID"]


def test_soft_close_off_by_default(make_lot, bidder):
    lot = make_lot()

    outcome = bid(lot, bidder, "10.00", now=lot.ends_at - timedelta(seconds=1))

    assert outcome.lot.ends_at == lot.ends_at
    assert event_types(lot) == ["NEW_BID"]


def test_rejected_bid_in_the_window_does_not_extend(closing_lot, bidder, other_bidder):
    bid(closing_lot, bidder, "10.00")
    now = closing_lot.ends_at - timedelta(seconds=5)

    with pytest.raises(BidRejected) as caught:
        bid(closing_lot, other_bidder, "10.10", now=now)

    assert caught.value.code == "bid_too_low"
    assert Lot.objects.get(pk=closing_lot.pk).ends_at == closing_lot.ends_at
    assert event_types(closing_lot) == ["NEW_BID"]


def test_private_maximum_raise_in_the_window_does_not_extend(closing_lot, bidder):
    bid(closing_lot, bidder, "10.00")

    outcome = bid(closing_lot, bidder, "10.00", max_amount="50.00", now=closing_lot.ends_at - timedelta(seconds=5))

    assert outcome.bid.raises_max_only
    lot = Lot.objects.get(pk=closing_lot.pk)
    assert (lot.ends_at, lot.seq) == (closing_lot.ends_at, 1)


def test_challenger_outbid_at_once_in_the_window_still_extends(closing_lot, bidder, other_bidder):
    bid(closing_lot, bidder, "10.00", max_amount="50.00")
    now = closing_lot.ends_at - timedelta(seconds=5)

    outcome = bid(closing_lot, other_bidder, "20.00", now=now)

    assert not outcome.leading
    assert outcome.lot.ends_at == now + timedelta(seconds=WINDOW)
    # One extension for the two rows the bid produced.
    assert event_types(closing_lot) == ["NEW_BID", "NEW_BID", "NEW_BID", "LOT_EXTENDED"]
    assert outcome.lot.current_price == Decimal("20.50")


def test_buy_now_in_the_window_ends_the_lot_without_extending_it(make_lot, bidder):
    ends_at = timezone.now() + timedelta(hours=1)
    lot = make_lot(ends_at=ends_at, buy_now_price="100.00", soft_close_seconds=WINDOW)
    now = ends_at - timedelta(seconds=5)

    buy_now(lot_id=lot.pk, buyer=bidder, now=now)

    lot.refresh_from_db()
    assert event_types(lot) == ["NEW_BID", "AUCTION_ENDED"]
    assert lot.ends_at == ends_at
    assert lot.closed_at == now
