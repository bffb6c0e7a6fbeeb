"""GET /api/users/me/bidding/: one row per lot the user bid on, with where they stand (issue 19)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from bids.services import void_bids
from lots.models import Lot, LotStatus
from lots.services import cancel_lot, close_lot
from testsupport.bidding import bid

pytestmark = pytest.mark.django_db

URL = "/api/users/me/bidding/"


def end_passed(lot, *, minutes_ago: int = 1) -> None:
    """Its end passed while no clock ran: the row still says `open`."""
    now = timezone.now()
    ended = now - timedelta(minutes=minutes_ago)
    Lot.objects.filter(pk=lot.pk).update(starts_at=now - timedelta(hours=2), ends_at=ended, hard_ends_at=ended)
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


def rows_of(client) -> dict[str, dict]:
    response = client.get(URL)
    assert response.status_code == 200, response.content
    return {row["title"]: row for row in response.json()["results"]}


def test_one_row_per_lot_with_the_bidders_own_highest_bid_and_maximum(make_lot, bidder, other_bidder, client_for):
    lot = make_lot(title="Lamp", starting_price="10.00", bid_increment="1.00")
    bid(lot, bidder, "10.00", max_amount="30.00")
    bid(lot, other_bidder, "15.00")  # alice's proxy answers at 16.00

    [row] = client_for(bidder).get(URL).json()["results"]

    lot.refresh_from_db()
    assert row == {
        "id": lot.pk,
        "title": "Lamp",
        "status": "open",
        "currency": lot.currency,
        "current_price": "16.00",
        "bid_count": 3,
        "ends_at": row["ends_at"],
        "closed_at": None,
        "my_highest_bid": "16.00",
        "my_max_amount": "30.00",
        "my_bid_count": 2,
        "standing": "leading",
    }
    # Bob sees his own row, never alice's maximum.
    [theirs] = client_for(other_bidder).get(URL).json()["results"]
    assert (theirs["my_highest_bid"], theirs["my_max_amount"], theirs["standing"]) == ("15.00", "15.00", "outbid")


def test_standings_while_open_after_the_end_and_when_cancelled(make_lot, bidder, other_bidder, seller, client_for):
    leading, outbid = make_lot(title="Leading"), make_lot(title="Outbid")
    won, lost, unsold = make_lot(title="Won"), make_lot(title="Lost"), make_lot(title="Unsold", reserve_price="50.00")
    cancelled = make_lot(title="Cancelled")
    for lot in (leading, outbid, won, lost, unsold, cancelled):
        bid(lot, bidder, "10.00")
    for lot in (outbid, lost):
        bid(lot, other_bidder, "20.00")
    for lot in (won, lost, unsold):
        close_lot(lot_id=lot.pk, actor=seller)
    cancel_lot(lot_id=cancelled.pk, actor=seller)

    rows = rows_of(client_for(bidder))

    assert {title: (row["status"], row["standing"]) for title, row in rows.items()} == {
        "Leading": ("open", "leading"),
        "Outbid": ("open", "outbid"),
        "Won": ("closed", "won"),
        "Lost": ("closed", "lost"),
        # Alice led, below the reserve: no sale.
        "Unsold": ("closed", "lost"),
        "Cancelled": ("cancelled", "cancelled"),
    }


def test_a_lot_past_its_end_not_yet_settled_reads_as_ended(make_lot, bidder, other_bidder, client_for):
    won, lost, unsold = make_lot(title="Won"), make_lot(title="Lost"), make_lot(title="Unsold", reserve_price="50.00")
    for lot in (won, lost, unsold):
        bid(lot, bidder, "10.00")
    bid(lost, other_bidder, "20.00")
    for lot in (won, lost, unsold):
        end_passed(lot)

    rows = rows_of(client_for(bidder))

    assert {title: (row["status"], row["standing"]) for title, row in rows.items()} == {
        "Won": ("closed", "won"),
        "Lost": ("closed", "lost"),
        "Unsold": ("closed", "lost"),
    }
    assert Lot.objects.filter(status=LotStatus.OPEN).count() == 3


def test_open_lots_come_first_ending_soonest_then_ended_ones_latest_first(make_lot, bidder, seller, client_for):
    now = timezone.now()
    later = make_lot(title="Ends later", ends_at=now + timedelta(hours=3))
    sooner = make_lot(title="Ends sooner", ends_at=now + timedelta(hours=1))
    long_ago, recently = make_lot(title="Ended long ago"), make_lot(title="Ended recently")
    cancelled = make_lot(title="Cancelled just now")
    for lot in (later, sooner, long_ago, recently, cancelled):
        bid(lot, bidder, "10.00")
    end_passed(long_ago, minutes_ago=60)
    end_passed(recently, minutes_ago=5)
    cancel_lot(lot_id=cancelled.pk, actor=seller)

    titles = list(rows_of(client_for(bidder)))

    assert titles == ["Ends sooner", "Ends later", "Cancelled just now", "Ended recently", "Ended long ago"]


def test_voided_bids_leave_the_list_and_the_replay_counts(make_lot, bidder, other_bidder, staff_user, client_for):
    lot = make_lot(title="Lamp", starting_price="10.00", bid_increment="1.00")
    bid(lot, other_bidder, "10.00")
    bid(lot, bidder, "20.00")
    bid(lot, other_bidder, "25.00")

    void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    # Alice's bids were taken back: the lot is no longer hers to follow here (/me/bids/ still lists them, marked).
    assert client_for(bidder).get(URL).json()["results"] == []
    assert {row["void_reason"] for row in client_for(bidder).get("/api/users/me/bids/").json()["results"]} == {"voided"}
    # Bob's superseded rows are gone; replayed without alice, his 25.00 only raised his maximum as the leader.
    [row] = client_for(other_bidder).get(URL).json()["results"]
    mine = (row["standing"], row["my_highest_bid"], row["my_max_amount"], row["my_bid_count"], row["bid_count"])
    assert mine == ("leading", "10.00", "25.00", 1, 1)


def test_a_page_of_rows_takes_the_same_queries_however_many_lots(
    make_lot, bidder, other_bidder, seller, client_for, django_assert_num_queries
):
    client = client_for(bidder)

    def add_lots(count: int) -> None:
        for n in range(count):
            lot = make_lot(title=f"Lot {n}", reserve_price="15.00" if n % 2 else None)
            bid(lot, bidder, "10.00", max_amount="12.00")
            if n % 3 == 0:
                bid(lot, other_bidder, "20.00")
            if n % 4 == 0:
                close_lot(lot_id=lot.pk, actor=seller)

    add_lots(1)
    # The user, the count, the page.
    with django_assert_num_queries(3):
        assert len(client.get(URL).json()["results"]) == 1
    add_lots(12)
    with django_assert_num_queries(3):
        assert len(client.get(URL).json()["results"]) == 13


def test_only_for_a_logged_in_user(api_client):
    response = api_client.get(URL)

    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


def test_a_page_that_does_not_exist_is_a_clear_404(bidder, client_for):
    response = client_for(bidder).get(URL + "?page=7")

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
