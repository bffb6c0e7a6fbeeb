"""Buy now (rule 6): closes the lot at once to the buyer while the price is below it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services import buy_now
from lots.exceptions import LotActionRefused
from lots.models import Lot, LotStatus
from lots.services import close_lot
from ops.exceptions import NotFound
from testsupport.bidding import bid, event_types, lot_events

pytestmark = pytest.mark.django_db

D = Decimal


def test_buy_now_closes_the_lot_to_the_buyer(make_lot, bidder):
    lot = make_lot(starting_price="10.00", buy_now_price="100.00")
    now = timezone.now()

    outcome = buy_now(lot_id=lot.pk, buyer=bidder, now=now)

    assert outcome.leading and not outcome.replayed
    assert outcome.bid.is_buy_now
    assert outcome.bid.amount == D("100.00")
    lot.refresh_from_db()
    assert lot.status == LotStatus.CLOSED
    assert (lot.winner, lot.final_price, lot.closed_at) == (bidder, D("100.00"), now)
    # The stored lot agrees with its one bid.
    assert (lot.current_price, lot.high_bidder, lot.bid_count) == (D("100.00"), bidder, 1)
    new_bid, ended = lot_events(lot)
    assert (new_bid["type"], new_bid["seq"], new_bid["bid"]["amount"]) == ("NEW_BID", 1, "100.00")
    assert (ended["type"], ended["seq"]) == ("AUCTION_ENDED", 2)
    assert ended["lot"]["winner"] == new_bid["bid"]["bidder"] == "Bidder 1"
    assert ended["lot"]["final_price"] == "100.00"
    assert lot.seq == 2


def test_buy_now_over_a_leader_notifies_buyer_seller_and_old_leader(
    make_lot, bidder, other_bidder, seller, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00", reserve_price="60.00", buy_now_price="100.00")
    bid(lot, bidder, "20.00", max_amount="90.00")
    for user in (bidder, other_bidder, seller):
        inbox.watch_user(user)

    with django_capture_on_commit_callbacks(execute=True):
        buy_now(lot_id=lot.pk, buyer=other_bidder)

    lot.refresh_from_db()
    assert (lot.winner, lot.final_price, lot.high_bidder, lot.bid_count) == (other_bidder, D("100.00"), other_bidder, 2)
    assert inbox.user_types(bidder) == ["OUTBID"]
    [won] = inbox.user_messages(other_bidder)
    assert (won["type"], won["final_price"]) == ("WON", "100.00")
    [sold] = inbox.user_messages(seller)
    assert (sold["type"], sold["winner"]) == ("LOT_SOLD", "bob")


def test_buy_now_below_the_reserve_meets_it(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="100.00", buy_now_price="100.00")

    buy_now(lot_id=lot.pk, buyer=bidder)

    assert Lot.objects.get(pk=lot.pk).winner == bidder


def test_no_buy_now_price_means_unavailable(make_lot, bidder):
    lot = make_lot(starting_price="10.00")

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=bidder)

    assert caught.value.code == "buy_now_unavailable"
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


@pytest.mark.parametrize("amount", ["100.00", "150.00"])
def test_buy_now_unavailable_once_the_price_reaches_it(make_lot, bidder, other_bidder, amount):
    lot = make_lot(starting_price="10.00", buy_now_price="100.00")
    bid(lot, bidder, amount)

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=other_bidder)

    assert caught.value.code == "buy_now_unavailable"
    lot.refresh_from_db()
    assert (lot.status, lot.high_bidder, lot.bid_count, lot.seq) == (LotStatus.OPEN, bidder, 1, 1)


def test_buy_now_available_just_below_its_price(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00", buy_now_price="100.00")
    bid(lot, bidder, "99.99")

    buy_now(lot_id=lot.pk, buyer=other_bidder)

    assert Lot.objects.get(pk=lot.pk).winner == other_bidder


def test_leader_may_buy_now(make_lot, bidder):
    lot = make_lot(starting_price="10.00", buy_now_price="100.00")
    bid(lot, bidder, "10.00", max_amount="99.00")

    buy_now(lot_id=lot.pk, buyer=bidder)

    lot.refresh_from_db()
    assert (lot.winner, lot.final_price) == (bidder, D("100.00"))


def test_buy_now_is_not_available_twice(make_lot, bidder, other_bidder):
    lot = make_lot(buy_now_price="100.00")
    buy_now(lot_id=lot.pk, buyer=bidder)

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=other_bidder)

    assert caught.value.code == "lot_closed"
    assert Lot.objects.get(pk=lot.pk).winner == bidder


def test_no_bid_after_buy_now(make_lot, bidder, other_bidder):
    lot = make_lot(buy_now_price="100.00")
    buy_now(lot_id=lot.pk, buyer=bidder)

    with pytest.raises(BidRejected) as caught:
        bid(lot, other_bidder, "200.00")

    assert caught.value.code == "lot_closed"


def test_lot_cannot_be_closed_again_after_buy_now(make_lot, bidder, seller):
    lot = make_lot(buy_now_price="100.00")
    buy_now(lot_id=lot.pk, buyer=bidder)

    with pytest.raises(LotActionRefused) as caught:
        close_lot(lot_id=lot.pk, actor=seller)

    assert caught.value.code == "lot_closed"
    assert event_types(lot) == ["NEW_BID", "AUCTION_ENDED"]


def test_buy_now_after_the_end_is_rejected(make_lot, bidder):
    lot = make_lot(buy_now_price="100.00")

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=bidder, now=lot.ends_at + timedelta(seconds=1))

    assert caught.value.code == "lot_closed"
    assert not Bid.objects.exists()


@pytest.mark.parametrize(
    ("buyer", "code"), [("seller", "own_lot"), ("staff_user", "staff_cannot_bid")], ids=["seller", "staff"]
)
def test_who_may_not_buy_now(make_lot, request, buyer, code):
    lot = make_lot(buy_now_price="100.00")

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=request.getfixturevalue(buyer))

    assert caught.value.code == code
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


def test_buy_now_on_someone_elses_draft_is_not_found(make_lot, bidder):
    lot = make_lot(buy_now_price="100.00", draft=True)

    with pytest.raises(NotFound) as caught:
        buy_now(lot_id=lot.pk, buyer=bidder)

    assert caught.value.code == "lot_not_found"


def test_retried_buy_now_replays(make_lot, bidder, django_capture_on_commit_callbacks):
    lot = make_lot(buy_now_price="100.00")
    first = buy_now(lot_id=lot.pk, buyer=bidder, idempotency_key="buy-1")

    with django_capture_on_commit_callbacks() as callbacks:
        again = buy_now(lot_id=lot.pk, buyer=bidder, idempotency_key="buy-1")

    assert again.replayed
    assert again.bid.pk == first.bid.pk
    assert callbacks == []
    assert Bid.objects.count() == 1
    assert Lot.objects.get(pk=lot.pk).seq == 2


def test_buy_now_key_reused_for_a_bid_conflicts(make_lot, bidder, other_bidder):
    lot = make_lot(buy_now_price="100.00")
    other_lot = make_lot(buy_now_price="100.00")
    buy_now(lot_id=lot.pk, buyer=bidder, idempotency_key="buy-1")

    with pytest.raises(BidRejected) as caught:
        bid(other_lot, bidder, "10.00", idempotency_key="buy-1")

    assert caught.value.code == "idempotency_conflict"
