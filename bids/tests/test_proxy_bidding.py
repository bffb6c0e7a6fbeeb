"""Proxy bidding (rules 3 and 4), with cases from eBay's published examples.

eBay's "automatic bidding" help: the leader pays one increment over the
second-highest maximum, never more than their own; equal maximums go to
whoever bid first; a maximum that meets the reserve lifts the price to it.
"""

from decimal import Decimal

import pytest

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.selectors import list_public_bids
from lots.models import Lot
from lots.services import close_lot
from testsupport.bidding import bid, event_types, lot_events, public_bids

pytestmark = pytest.mark.django_db

D = Decimal


def state(lot) -> tuple[Decimal, str, int]:
    lot = Lot.objects.select_related("high_bidder").get(pk=lot.pk)
    return lot.current_price, lot.high_bidder.username, lot.bid_count


def test_first_bid_with_a_maximum_shows_only_the_amount(make_lot, bidder):
    lot = make_lot(starting_price="10.00")

    outcome = bid(lot, bidder, "10.00", max_amount="15.00")

    assert outcome.leading
    assert state(lot) == (D("10.00"), "alice", 1)
    assert Lot.objects.get(pk=lot.pk).high_max_amount == D("15.00")
    assert outcome.bid.max_amount == D("15.00")


def test_challenger_below_the_leaders_maximum_is_outbid_at_once(make_lot, bidder, other_bidder):
    # eBay: the leader's maximum is 15.00; a bid of 12.00 is answered at 12.50.
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")

    outcome = bid(lot, other_bidder, "12.00")

    assert not outcome.leading
    assert outcome.bid.bidder == other_bidder
    assert outcome.bid.amount == D("12.00")
    assert not outcome.bid.is_proxy
    assert public_bids(lot) == [
        ("alice", D("10.00"), False),
        ("bob", D("12.00"), False),
        ("alice", D("12.50"), True),
    ]
    assert state(lot) == (D("12.50"), "alice", 3)
    assert Lot.objects.get(pk=lot.pk).high_max_amount == D("15.00")


def test_leader_pays_one_increment_over_the_challengers_maximum(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="100.00")

    bid(lot, other_bidder, "11.00", max_amount="50.00")

    # 50.00 + the increment at 50.00 (1.00).
    assert public_bids(lot)[-1] == ("alice", D("51.00"), True)
    assert state(lot) == (D("51.00"), "alice", 3)


def test_proxy_answer_is_capped_by_the_leaders_maximum(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")

    bid(lot, other_bidder, "12.00", max_amount="14.80")

    assert public_bids(lot)[-1] == ("alice", D("15.00"), True)
    assert state(lot) == (D("15.00"), "alice", 3)


def test_challenger_above_the_leaders_maximum_takes_the_lead(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")

    outcome = bid(lot, other_bidder, "11.00", max_amount="30.00")

    assert outcome.leading
    # The old leader's proxy bids its maximum out, then the challenger
    # stands one increment above it (15.00 + 0.50).
    assert public_bids(lot) == [
        ("alice", D("10.00"), False),
        ("alice", D("15.00"), True),
        ("bob", D("15.50"), False),
    ]
    assert state(lot) == (D("15.50"), "bob", 3)
    assert Lot.objects.get(pk=lot.pk).high_max_amount == D("30.00")


def test_challenger_wins_by_less_than_an_increment(make_lot, bidder, other_bidder):
    # eBay: the leader's maximum is 40.00, the increment there 1.00; a
    # maximum of 40.30 wins, at 40.30.
    lot = make_lot(starting_price="20.00")
    bid(lot, bidder, "20.00", max_amount="40.00")

    outcome = bid(lot, other_bidder, "21.00", max_amount="40.30")

    assert outcome.leading
    assert outcome.bid.amount == D("40.30")
    assert state(lot) == (D("40.30"), "bob", 3)


def test_equal_maximums_go_to_the_earlier_bidder(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="25.00")

    outcome = bid(lot, other_bidder, "11.00", max_amount="25.00")

    assert not outcome.leading
    assert public_bids(lot)[-1] == ("alice", D("25.00"), True)
    assert state(lot) == (D("25.00"), "alice", 3)


def test_a_plain_bid_equal_to_the_leaders_maximum_loses_to_it(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="25.00")

    outcome = bid(lot, other_bidder, "25.00")

    assert not outcome.leading
    # No proxy row: the price already stands at the leader's maximum.
    assert public_bids(lot) == [("alice", D("10.00"), False), ("bob", D("25.00"), False)]
    assert state(lot) == (D("25.00"), "alice", 2)


def test_plain_bids_without_maximums_alternate(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    assert bid(lot, other_bidder, "10.50").leading

    assert state(lot) == (D("10.50"), "bob", 2)
    assert not Bid.objects.filter(is_proxy=True).exists()


def test_a_later_challenger_faces_the_second_maximum_too(make_lot, bidder, other_bidder, third_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="20.00")
    bid(lot, other_bidder, "11.00", max_amount="30.00")  # bob leads at 20.50

    outcome = bid(lot, third_bidder, "21.00", max_amount="28.00")

    assert not outcome.leading
    assert state(lot) == (D("29.00"), "bob", 5)


# --- A leader raising their own maximum ---------------------------------------


def test_leader_raises_maximum_without_moving_the_price(make_lot, bidder, django_capture_on_commit_callbacks):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        outcome = bid(lot, bidder, "10.50", max_amount="40.00")

    assert outcome.leading
    assert outcome.bid.raises_max_only
    assert outcome.bid.max_amount == D("40.00")
    lot.refresh_from_db()
    assert (lot.current_price, lot.bid_count, lot.seq, lot.high_max_amount) == (D("10.00"), 1, 1, D("40.00"))
    assert event_types(lot) == ["NEW_BID"]
    assert callbacks == []
    assert [b.amount for b in list_public_bids(lot_id=lot.pk)] == [D("10.00")]


def test_raised_maximum_defends_the_lead(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")
    bid(lot, bidder, "10.00", max_amount="40.00")

    outcome = bid(lot, other_bidder, "20.00", max_amount="30.00")

    assert not outcome.leading
    assert state(lot) == (D("31.00"), "alice", 3)


def test_leader_without_a_maximum_rebidding_higher_sets_one(make_lot, bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    outcome = bid(lot, bidder, "12.00")

    assert outcome.bid.raises_max_only
    lot.refresh_from_db()
    assert (lot.current_price, lot.high_max_amount, lot.seq) == (D("10.00"), D("12.00"), 1)


@pytest.mark.parametrize(
    ("amount", "max_amount"),
    [("10.50", None), ("12.00", "15.00"), ("15.00", None), ("11.00", "14.00")],
    ids=["plain", "same max", "amount at max", "lower max"],
)
def test_leader_rebidding_without_raising_the_maximum_is_already_leading(make_lot, bidder, amount, max_amount):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")

    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, amount, max_amount=max_amount)

    assert caught.value.code == "already_leading"
    assert Bid.objects.count() == 1
    lot.refresh_from_db()
    assert (lot.high_max_amount, lot.seq) == (D("15.00"), 1)


# --- Reserve (rule 4) ---------------------------------------------------------


def test_bids_below_the_reserve_are_accepted_but_do_not_meet_it(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")

    outcome = bid(lot, bidder, "20.00")

    assert outcome.leading
    assert not outcome.lot.reserve_met
    [event] = lot_events(lot)
    assert event["lot"]["reserve_met"] is False


def test_price_jumps_to_the_reserve_when_a_first_maximum_meets_it(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")

    bid(lot, bidder, "10.00", max_amount="60.00")

    assert state(lot) == (D("50.00"), "alice", 1)
    [event] = lot_events(lot)
    assert event["bid"]["amount"] == "50.00"
    assert event["lot"]["reserve_met"] is True


def test_price_jumps_to_the_reserve_when_a_challengers_maximum_meets_it(make_lot, bidder, other_bidder):
    # eBay: reserve 50.00; the leader's maximum 40.00; a challenger with a
    # maximum of 70.00 leads at the reserve, not at 41.00.
    lot = make_lot(starting_price="10.00", reserve_price="50.00")
    bid(lot, bidder, "10.00", max_amount="40.00")

    outcome = bid(lot, other_bidder, "11.00", max_amount="70.00")

    assert outcome.leading
    assert state(lot) == (D("50.00"), "bob", 3)
    assert lot_events(lot)[-1]["lot"]["reserve_met"] is True


def test_maximum_exactly_at_the_reserve_meets_it(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")

    bid(lot, bidder, "10.00", max_amount="50.00")

    assert state(lot)[0] == D("50.00")


def test_leader_raising_the_maximum_to_the_reserve_moves_the_price(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")
    bid(lot, bidder, "10.00", max_amount="20.00")

    outcome = bid(lot, bidder, "10.00", max_amount="80.00")

    assert not outcome.bid.raises_max_only
    assert outcome.bid.amount == D("50.00")
    lot.refresh_from_db()
    assert (lot.current_price, lot.bid_count, lot.seq, lot.high_max_amount) == (D("50.00"), 2, 2, D("80.00"))
    assert lot_events(lot)[-1]["lot"]["reserve_met"] is True


def test_leader_raising_below_the_reserve_stays_private(make_lot, bidder):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")
    bid(lot, bidder, "10.00", max_amount="20.00")

    assert bid(lot, bidder, "10.00", max_amount="49.99").bid.raises_max_only

    assert Lot.objects.get(pk=lot.pk).seq == 1


def test_events_show_whether_the_reserve_is_met_but_never_the_reserve(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00", reserve_price="77.70")
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "11.00")

    for event in lot_events(lot):
        assert event["lot"]["reserve_met"] is False
        assert "77.7" not in str(event)
        assert "reserve_price" not in str(event)


def test_reserve_not_met_at_close_means_no_winner(make_lot, bidder, seller):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")
    bid(lot, bidder, "10.00", max_amount="49.00")

    lot = close_lot(lot_id=lot.pk, actor=seller)

    assert lot.winner is None and lot.final_price is None


# --- Maximums stay hidden -------------------------------------------------------


def test_maximums_are_never_shown(make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot(starting_price="10.00")
    inbox.watch_lot(lot)
    inbox.watch_user(bidder)
    inbox.watch_user(other_bidder)

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00", max_amount="87.35")
    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, other_bidder, "11.00", max_amount="43.21")
    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00", max_amount="96.54")

    sent = [m["text"] for m in inbox.lot_messages(lot)]
    sent += [str(m) for m in inbox.user_messages(bidder) + inbox.user_messages(other_bidder)]
    stored = [str(e) for e in lot_events(lot)]
    assert len(sent) >= 4
    assert len(stored) == 3
    for text in sent + stored:
        assert "87.35" not in text
        assert "96.54" not in text
        assert "max_amount" not in text
    # bob is outbid at once: his maximum plus one increment is the price.
    assert state(lot) == (D("44.21"), "alice", 3)


# --- Outbid notifications ---------------------------------------------------------


def test_challenger_outbid_at_once_is_notified(
    make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")
    inbox.watch_user(bidder)
    inbox.watch_user(other_bidder)

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, other_bidder, "12.00")

    [notice] = inbox.user_messages(other_bidder)
    assert notice["type"] == "OUTBID"
    assert notice["lot_id"] == lot.pk
    assert notice["current_price"] == "12.50"
    assert notice["high_bidder"] == "Bidder 1"  # alice, by her alias
    assert inbox.user_messages(bidder) == []


def test_leader_who_loses_the_lead_is_notified(
    make_lot, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="15.00")
    inbox.watch_user(bidder)
    inbox.watch_user(other_bidder)

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, other_bidder, "11.00", max_amount="30.00")

    [notice] = inbox.user_messages(bidder)
    assert notice["type"] == "OUTBID"
    assert (notice["current_price"], notice["high_bidder"]) == ("15.50", "Bidder 2")
    assert inbox.user_messages(other_bidder) == []


def test_nobody_is_notified_of_a_first_bid_or_a_private_raise(
    make_lot, bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00")
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00")
    with django_capture_on_commit_callbacks(execute=True):
        bid(lot, bidder, "10.00", max_amount="20.00")

    assert inbox.user_messages(bidder) == []
