"""place_bid: who may bid, the minimum next bid, malformed amounts, idempotency."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from bids.exceptions import BidRejected, InvalidBid
from bids.models import Bid
from bids.selectors import list_public_bids
from bids.services import bid_request, buy_now, place_bids
from lots.events import lot_min_next_bid
from lots.models import Lot, LotEvent, LotStatus
from lots.pricing import increment_for
from lots.services import cancel_lot, close_lot
from ops.exceptions import DomainError, NotFound
from testsupport.bidding import bid, event_types, lot_events

pytestmark = pytest.mark.django_db


def assert_untouched(lot: Lot) -> None:
    """A rejected bid stores nothing and changes nothing."""
    fresh = Lot.objects.get(pk=lot.pk)
    assert (fresh.current_price, fresh.high_bidder_id, fresh.bid_count, fresh.seq, fresh.ends_at) == (
        lot.current_price,
        lot.high_bidder_id,
        lot.bid_count,
        lot.seq,
        lot.ends_at,
    )
    assert LotEvent.objects.filter(lot=lot).count() == lot.seq


# --- Rule 1: an open lot before its end, not the seller, not staff ---------


def test_accepted_bid_moves_price_leader_and_count(make_lot, bidder):
    lot = make_lot(starting_price="10.00")

    outcome = bid(lot, bidder, "12.00")

    lot.refresh_from_db()
    assert outcome.leading and not outcome.replayed
    assert outcome.bid.amount == Decimal("12.00")
    assert (lot.current_price, lot.high_bidder, lot.bid_count, lot.seq) == (Decimal("12.00"), bidder, 1, 1)
    [event] = lot_events(lot)
    assert event["type"] == "NEW_BID"
    assert event["seq"] == 1
    assert event["bid"]["amount"] == "12.00"
    # The public frame names the bidder by their alias on the lot, not their username.
    assert event["bid"]["bidder"] == event["lot"]["high_bidder"] == outcome.alias == "Bidder 1"
    assert event["lot"]["min_next_bid"] == "12.50"


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
def test_bid_at_or_after_end_is_rejected_while_row_still_says_open(make_lot, bidder, after):
    lot = make_lot()

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "10.00", now=lot.ends_at + after)

    assert caught.value.code == "lot_closed"
    lot.refresh_from_db()
    assert lot.status == LotStatus.OPEN
    assert_untouched(lot)


def test_bid_just_before_end_is_accepted(make_lot, bidder):
    lot = make_lot()

    outcome = bid(lot, bidder, "10.00", now=lot.ends_at - timedelta(microseconds=1))

    assert outcome.leading


def test_bid_on_closed_lot_is_rejected(make_lot, bidder, seller):
    lot = close_lot(lot_id=make_lot().pk, actor=seller)

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "10.00")

    assert caught.value.code == "lot_closed"
    assert_untouched(lot)


def test_bid_on_cancelled_lot_is_rejected(make_lot, bidder, seller):
    lot = cancel_lot(lot_id=make_lot().pk, actor=seller)

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "10.00")

    assert caught.value.code == "lot_closed"


def test_bid_on_lot_not_yet_open_is_rejected(make_lot, bidder):
    lot = make_lot(starts_at=timezone.now() + timedelta(minutes=10))
    assert lot.status == LotStatus.SCHEDULED

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "10.00")

    assert caught.value.code == "lot_not_open"
    assert_untouched(lot)


def test_bid_on_someone_elses_draft_is_not_found(make_lot, bidder):
    lot = make_lot(draft=True)

    with pytest.raises(NotFound) as caught:
        bid(lot, bidder, "10.00")

    assert caught.value.code == "lot_not_found"
    assert_untouched(lot)


def test_seller_cannot_bid_on_own_lot(make_lot, seller):
    lot = make_lot()

    with pytest.raises(BidRejected) as caught:
        bid(lot, seller, "10.00")

    assert caught.value.code == "own_lot"
    assert_untouched(lot)


def test_staff_cannot_bid_by_default(make_lot, staff_user):
    lot = make_lot()

    with pytest.raises(BidRejected) as caught:
        bid(lot, staff_user, "10.00")

    assert caught.value.code == "staff_cannot_bid"
    assert_untouched(lot)


def test_staff_may_bid_when_the_setting_allows(make_lot, staff_user, settings):
    settings.AUCTION_STAFF_CAN_BID = True
    lot = make_lot()

    assert bid(lot, staff_user, "10.00").leading


def test_unknown_lot_is_not_found(bidder):
    with pytest.raises(DomainError) as caught:
        bid(Lot(pk=987654), bidder, "10.00")

    assert caught.value.code == "lot_not_found"


# --- Rule 2: the minimum next bid -------------------------------------------


def test_first_bid_below_starting_price_is_too_low(make_lot, bidder):
    lot = make_lot(starting_price="10.00")

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "9.99")

    assert caught.value.code == "bid_too_low"
    assert caught.value.extra["min_next_bid"] == "10.00"
    assert_untouched(lot)


def test_first_bid_may_be_the_starting_price(make_lot, bidder):
    lot = make_lot(starting_price="10.00")

    assert bid(lot, bidder, "10.00").lot.current_price == Decimal("10.00")


@pytest.mark.parametrize(
    ("price", "increment"),
    [
        ("0.50", "0.05"),
        ("0.99", "0.05"),
        ("1.00", "0.25"),
        ("4.99", "0.25"),
        ("5.00", "0.50"),
        ("24.99", "0.50"),
        ("25.00", "1.00"),
        ("99.99", "1.00"),
        ("100.00", "2.50"),
        ("249.99", "2.50"),
        ("250.00", "5.00"),
        ("499.99", "5.00"),
        ("500.00", "10.00"),
        ("999.99", "10.00"),
        ("1000.00", "25.00"),
        ("2499.99", "25.00"),
        ("2500.00", "50.00"),
        ("4999.99", "50.00"),
        ("5000.00", "100.00"),
        ("1000000.00", "100.00"),
    ],
)
def test_increment_table(price, increment):
    assert increment_for(Decimal(price)) == Decimal(increment)


@pytest.mark.parametrize(
    ("price", "increment"),
    [
        ("0.50", "0.05"),
        ("1.00", "0.25"),
        ("5.00", "0.50"),
        ("25.00", "1.00"),
        ("100.00", "2.50"),
        ("250.00", "5.00"),
        ("500.00", "10.00"),
        ("1000.00", "25.00"),
        ("2500.00", "50.00"),
        ("5000.00", "100.00"),
    ],
)
def test_next_bid_must_add_the_increment_for_the_current_price(make_lot, bidder, other_bidder, price, increment):
    lot = make_lot(starting_price=price)
    bid(lot, bidder, price)
    minimum = Decimal(price) + Decimal(increment)

    with pytest.raises(BidRejected) as caught:
        bid(lot, other_bidder, minimum - Decimal("0.01"))

    assert caught.value.code == "bid_too_low"
    assert caught.value.extra["min_next_bid"] == str(minimum)
    assert bid(lot, other_bidder, minimum).lot.current_price == minimum


def test_lot_increment_overrides_the_table(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00", bid_increment="3.00")
    bid(lot, bidder, "10.00")

    with pytest.raises(BidRejected) as caught:
        bid(lot, other_bidder, "12.99")

    assert caught.value.extra["min_next_bid"] == "13.00"
    assert bid(lot, other_bidder, "13.00").leading
    assert lot_events(lot)[-1]["lot"]["min_next_bid"] == "16.00"


def test_bid_too_low_from_a_challenger_changes_nothing(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    lot = bid(lot, bidder, "10.00", max_amount="50.00").lot

    with pytest.raises(BidRejected) as caught:
        bid(lot, other_bidder, "10.40", max_amount="100.00")

    assert caught.value.code == "bid_too_low"
    assert caught.value.extra["min_next_bid"] == "10.50"
    assert_untouched(lot)
    assert Lot.objects.get(pk=lot.pk).high_max_amount == Decimal("50.00")


# --- Rule 8: malformed amounts -----------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "-5.00",
        -5,
        "0",
        "0.00",
        0,
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        0.1 + 0.2,
        float("nan"),
        float("inf"),
        "12.505",
        "0.001",
        "10000000000.00",
        "1e30",
        "twelve",
        "",
        "1" * 60,
        None,
        True,
        [12],
    ],
)
def test_malformed_amount_is_invalid(make_lot, bidder, amount):
    lot = make_lot(starting_price="1.00")

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, amount)

    assert isinstance(caught.value, BidRejected)
    assert caught.value.code == "invalid_amount"
    assert not Bid.objects.exists()
    assert_untouched(lot)


@pytest.mark.parametrize("max_amount", ["-1", "0", "NaN", "Infinity", 99.999, "12.001", "10000000000.00"])
def test_malformed_max_amount_is_invalid(make_lot, bidder, max_amount):
    lot = make_lot(starting_price="1.00")

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, "12.00", max_amount=max_amount)

    assert caught.value.code == "invalid_amount"
    assert not Bid.objects.exists()


@pytest.mark.parametrize("field", ["amount", "max_amount"])
def test_exact_float_is_taken_at_its_literal_value(make_lot, bidder, field):
    # A JSON number from a JavaScript client: 12.5 means exactly 12.50.
    lot = make_lot(starting_price="1.00")
    amounts = {"amount": "12.00", "max_amount": None} | {field: 12.5}

    outcome = bid(lot, bidder, **amounts)

    stored = outcome.bid.amount if field == "amount" else outcome.bid.max_amount
    assert stored == Decimal("12.50")


@pytest.mark.parametrize("field", ["amount", "max_amount"])
def test_float_that_lost_precision_is_invalid(make_lot, bidder, field):
    lot = make_lot(starting_price="0.01")
    amounts = {"amount": "0.10", "max_amount": None} | {field: 0.1 + 0.2}

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, **amounts)

    assert caught.value.code == "invalid_amount"


def test_max_amount_below_amount_is_invalid(make_lot, bidder):
    lot = make_lot(starting_price="1.00")

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, "12.00", max_amount="11.99")

    assert caught.value.code == "invalid_amount"
    assert not Bid.objects.exists()


def test_amount_takes_at_most_two_decimals(make_lot, bidder):
    lot = make_lot(starting_price="1.00")

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, "12.500")

    assert caught.value.code == "invalid_amount"
    assert bid(lot, bidder, "12.5").bid.amount == Decimal("12.50")


def test_amounts_follow_the_lot_currency_minor_units(make_lot, bidder):
    lot = make_lot(currency="JPY", starting_price="1000")

    with pytest.raises(InvalidBid) as caught:
        bid(lot, bidder, "1000.50")

    assert caught.value.code == "invalid_amount"
    assert bid(lot, bidder, "1000").leading


@pytest.mark.parametrize(("price", "next_bid"), [("3", "4"), ("20", "21"), ("240", "243"), ("99", "100")])
def test_a_yen_lot_never_asks_for_a_fraction_of_a_yen(make_lot, bidder, other_bidder, price, next_bid):
    # The increment table's steps (0.25, 0.50, 2.50) round up to whole yen.
    lot = make_lot(currency="JPY", starting_price=price)
    assert bid(lot, bidder, price, max_amount="500").lot.current_price == Decimal(price)

    assert lot_min_next_bid(Lot.objects.get(pk=lot.pk)) == Decimal(next_bid)
    # The leader's proxy answers a challenge one whole increment above it, within its maximum.
    outcome = bid(lot, other_bidder, next_bid)
    assert not outcome.leading
    lot.refresh_from_db()
    assert lot.current_price == lot.current_price.to_integral_value()
    assert lot.current_price > Decimal(next_bid)


# --- Rule 7: idempotency ------------------------------------------------------


def test_retried_key_replays_the_first_outcome(make_lot, bidder, django_capture_on_commit_callbacks):
    lot = make_lot()
    first = bid(lot, bidder, "12.00", idempotency_key="k-1")

    with django_capture_on_commit_callbacks() as callbacks:
        again = bid(lot, bidder, "12.00", idempotency_key="k-1")

    assert again.replayed and not first.replayed
    assert again.bid.pk == first.bid.pk
    assert again.leading
    assert Bid.objects.count() == 1
    lot.refresh_from_db()
    assert (lot.bid_count, lot.seq) == (1, 1)
    assert callbacks == []


def test_retried_key_replays_even_after_being_outbid_and_the_lot_closing(make_lot, bidder, other_bidder, seller):
    lot = make_lot()
    first = bid(lot, bidder, "12.00", idempotency_key="k-1")
    bid(lot, other_bidder, "20.00")
    close_lot(lot_id=lot.pk, actor=seller)

    again = bid(lot, bidder, "12.00", idempotency_key="k-1")

    assert again.replayed
    assert again.bid.pk == first.bid.pk
    assert not again.leading
    assert Bid.objects.count() == 2


def test_retried_key_with_equivalent_amount_spelling_replays(make_lot, bidder):
    lot = make_lot()
    first = bid(lot, bidder, "12", idempotency_key="k-1")

    assert bid(lot, bidder, "12.00", idempotency_key="k-1").bid.pk == first.bid.pk


@pytest.mark.parametrize(
    ("amount", "max_amount"), [("13.00", None), ("12.00", "30.00")], ids=["other amount", "other max"]
)
def test_reused_key_with_another_body_conflicts(make_lot, bidder, amount, max_amount):
    lot = make_lot()
    bid(lot, bidder, "12.00", idempotency_key="k-1")

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, amount, max_amount=max_amount, idempotency_key="k-1")

    assert caught.value.code == "idempotency_conflict"
    assert Bid.objects.count() == 1


def test_reused_key_on_another_lot_conflicts(make_lot, bidder):
    lot, other_lot = make_lot(), make_lot()
    bid(lot, bidder, "12.00", idempotency_key="k-1")

    with pytest.raises(BidRejected) as caught:
        bid(other_lot, bidder, "12.00", idempotency_key="k-1")

    assert caught.value.code == "idempotency_conflict"
    assert not Bid.objects.filter(lot=other_lot).exists()


def test_reused_bid_key_for_buy_now_conflicts(make_lot, bidder):
    lot = make_lot(buy_now_price="100.00")
    bid(lot, bidder, "12.00", idempotency_key="k-1")

    with pytest.raises(BidRejected) as caught:
        buy_now(lot_id=lot.pk, buyer=bidder, idempotency_key="k-1")

    assert caught.value.code == "idempotency_conflict"
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


def test_keys_belong_to_one_bidder(make_lot, bidder, other_bidder):
    lot = make_lot()
    bid(lot, bidder, "12.00", idempotency_key="k-1")

    outcome = bid(lot, other_bidder, "13.00", idempotency_key="k-1")

    assert not outcome.replayed
    assert outcome.leading
    assert Bid.objects.count() == 2


def test_rejected_bid_does_not_consume_its_key(make_lot, bidder):
    lot = make_lot(starting_price="10.00")
    with pytest.raises(BidRejected):
        bid(lot, bidder, "9.00", idempotency_key="k-1")

    outcome = bid(lot, bidder, "10.00", idempotency_key="k-1")

    assert not outcome.replayed
    assert outcome.bid.idempotency_key == "k-1"
    assert Bid.objects.count() == 1


# --- Public history ---------------------------------------------------------


def test_rejections_leave_no_event(make_lot, bidder, other_bidder, seller):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")
    for user, amount in [(other_bidder, "10.10"), (seller, "20.00"), (other_bidder, "abc")]:
        with pytest.raises(BidRejected):
            bid(lot, user, amount)

    assert event_types(lot) == ["NEW_BID"]
    assert [b.amount for b in list_public_bids(lot_id=lot.pk)] == [Decimal("10.00")]


# --- Bids that waited together: one transaction (`place_bids`) ---------------------


def test_bids_together_each_get_the_outcome_they_would_have_had_alone(make_lot, bidder, other_bidder, third_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")
    requests = [
        bid_request(lot_id=lot.pk, bidder=other_bidder, amount="11.00"),
        bid_request(lot_id=lot.pk, bidder=third_bidder, amount="11.00"),
        bid_request(lot_id=lot.pk, bidder=third_bidder, amount="12.00", max_amount="30.00"),
    ]

    first, second, third = place_bids(lot_id=lot.pk, requests=requests)

    assert first.leading and first.alias == "Bidder 2"
    assert isinstance(second, BidRejected) and second.code == "bid_too_low" and second.extra["min_next_bid"] == "11.50"
    assert third.leading and third.alias == "Bidder 3"
    events = lot_events(lot)
    assert [(e["seq"], e["bid"]["bidder"], e["bid"]["amount"]) for e in events] == [
        (1, "Bidder 1", "10.00"),
        (2, "Bidder 2", "11.00"),
        (3, "Bidder 3", "12.00"),
    ]
    # Each answer shows the lot as its own bid left it.
    assert (first.lot_state["current_price"], first.seq) == (Decimal("11.00"), 2)
    assert (third.lot_state["current_price"], third.seq) == (Decimal("12.00"), 3)


def test_a_key_sent_twice_in_one_batch_is_placed_once(make_lot, bidder):
    lot = make_lot(starting_price="10.00")
    retry = bid_request(lot_id=lot.pk, bidder=bidder, amount="10.00", idempotency_key="k")
    reuse = bid_request(lot_id=lot.pk, bidder=bidder, amount="15.00", idempotency_key="k")

    first, again, other = place_bids(lot_id=lot.pk, requests=[retry, retry, reuse])

    assert (first.replayed, again.replayed, again.bid.pk) == (False, True, first.bid.pk)
    assert isinstance(other, BidRejected) and other.code == "idempotency_conflict"
    assert Bid.objects.filter(lot=lot).count() == 1


def test_a_key_already_stored_sends_the_batch_through_one_at_a_time(make_lot, bidder, other_bidder, third_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", idempotency_key="k")
    requests = [
        bid_request(lot_id=lot.pk, bidder=other_bidder, amount="11.00"),
        # Accepted by the rules, but its key is taken: the batch's insert fails.
        bid_request(lot_id=lot.pk, bidder=bidder, amount="20.00", idempotency_key="k"),
        bid_request(lot_id=lot.pk, bidder=third_bidder, amount="25.00"),
    ]

    first, conflict, third = place_bids(lot_id=lot.pk, requests=requests)

    assert first.leading and third.leading
    assert isinstance(conflict, BidRejected) and conflict.code == "idempotency_conflict"
    assert [e["bid"]["amount"] for e in lot_events(lot)] == ["10.00", "11.00", "25.00"]
