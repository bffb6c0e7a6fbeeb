"""Staggering a sale: its lots end one after another, `interval` seconds apart, in catalogue order."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from rest_framework.test import APIClient

from lots.clock import run_due_work, seconds_until_next_due
from lots.exceptions import NotLotManager
from lots.models import Auction, Lot, LotStatus
from lots.services import close_lot, stagger_auction_lots
from ops.exceptions import InvalidInput
from testsupport.bidding import bid, event_types, lot_events
from testsupport.clocks import in_seconds, running_clock, wait_for_status

pytestmark = pytest.mark.django_db

INTERVAL = 60
# The clock acts within a second of a lot's time.
ON_TIME = timedelta(seconds=1)


@pytest.fixture
def sale():
    return Auction.objects.create(title="Autumn sale", slug="autumn")


@pytest.fixture
def catalogue(make_lot, sale):
    """Lots of the sale created out of catalogue order, the unnumbered one last in it."""
    return {
        number: make_lot(title=f"Lot {number}", auction=sale, lot_number=number, ends_at=in_seconds(7200))
        for number in (3, 1, None, 2)
    }


def ends(lots) -> list:
    return [Lot.objects.get(pk=lot.pk).ends_at for lot in lots]


def in_catalogue_order(catalogue) -> list[Lot]:
    return [catalogue[1], catalogue[2], catalogue[3], catalogue[None]]


# --- The service ---------------------------------------------------------------------------------


def test_lots_end_one_after_another_in_catalogue_order(catalogue, sale, staff_user, make_lot):
    first_end = timezone.now() + timedelta(hours=1)
    elsewhere = make_lot(title="Not in the sale", ends_at=in_seconds(7200))
    original = elsewhere.ends_at

    lots = stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=INTERVAL)

    ordered = in_catalogue_order(catalogue)
    assert [lot.pk for lot in lots] == [lot.pk for lot in ordered]
    assert ends(ordered) == [first_end + timedelta(seconds=INTERVAL * n) for n in range(4)]
    assert all(lot.hard_ends_at >= lot.ends_at for lot in Lot.objects.filter(auction=sale))
    assert Lot.objects.get(pk=elsewhere.pk).ends_at == original
    sale.refresh_from_db()
    assert sale.stagger_seconds == INTERVAL


def test_each_lot_keeps_its_soft_close_allowance(make_lot, sale, staff_user):
    end = in_seconds(7200)
    no_extension = make_lot(auction=sale, lot_number=1, ends_at=end, hard_ends_at=end)
    ten_minutes = make_lot(auction=sale, lot_number=2, ends_at=end, hard_ends_at=end + timedelta(minutes=10))
    first_end = timezone.now() + timedelta(hours=3)

    stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=INTERVAL)

    no_extension.refresh_from_db()
    ten_minutes.refresh_from_db()
    assert no_extension.hard_ends_at == no_extension.ends_at == first_end
    assert ten_minutes.hard_ends_at - ten_minutes.ends_at == timedelta(minutes=10)


def test_a_lot_whose_end_moves_later_warns_its_watchers_again(make_lot, sale, staff_user, settings):
    lot = make_lot(auction=sale, ends_at=in_seconds(60))
    settings.AUCTION_ENDING_SOON_SECONDS = 120
    assert run_due_work().warned == 1

    stagger_auction_lots(
        auction=sale, actor=staff_user, first_ends_at=timezone.now() + timedelta(hours=1), interval_seconds=0
    )

    assert Lot.objects.get(pk=lot.pk).ending_soon_sent_at is None


def test_open_lots_announce_their_new_end(catalogue, sale, staff_user):
    first_end = timezone.now() + timedelta(hours=1)

    stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=INTERVAL)

    updated = lot_events(catalogue[2])[-1]
    assert (updated["type"], updated["lot"]["status"]) == ("LOT_UPDATED", "open")
    assert Lot.objects.get(pk=catalogue[2].pk).ends_at == first_end + timedelta(seconds=INTERVAL)


def test_ended_lots_keep_their_end_and_leave_no_gap(catalogue, sale, staff_user, bidder):
    bid(catalogue[2], bidder, "10.00")
    close_lot(lot_id=catalogue[2].pk, actor=staff_user)
    closed_end = Lot.objects.get(pk=catalogue[2].pk).ends_at
    first_end = timezone.now() + timedelta(hours=1)

    stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=INTERVAL)

    assert Lot.objects.get(pk=catalogue[2].pk).ends_at == closed_end
    assert ends([catalogue[1], catalogue[3], catalogue[None]]) == [
        first_end + timedelta(seconds=INTERVAL * n) for n in range(3)
    ]
    assert event_types(catalogue[2]) == ["NEW_BID", "AUCTION_ENDED"]


def test_only_staff_may_stagger(catalogue, sale, seller):
    with pytest.raises(NotLotManager) as refused:
        stagger_auction_lots(auction=sale, actor=seller, first_ends_at=in_seconds(3600), interval_seconds=INTERVAL)

    assert refused.value.code == "not_staff"


@pytest.mark.parametrize(("first_in", "interval"), [(-1, INTERVAL), (3600, -1)])
def test_the_first_end_must_be_ahead_and_the_interval_not_negative(catalogue, sale, staff_user, first_in, interval):
    before = ends(in_catalogue_order(catalogue))

    with pytest.raises(InvalidInput) as refused:
        stagger_auction_lots(
            auction=sale, actor=staff_user, first_ends_at=in_seconds(first_in), interval_seconds=interval
        )

    assert refused.value.code == "invalid_schedule"
    assert ends(in_catalogue_order(catalogue)) == before


def test_a_lot_that_would_end_before_it_starts_changes_nothing(catalogue, sale, staff_user, make_lot):
    make_lot(
        title="Late starter", auction=sale, lot_number=9, starts_at=in_seconds(3 * 3600), ends_at=in_seconds(4 * 3600)
    )
    before = ends(in_catalogue_order(catalogue))

    with pytest.raises(InvalidInput) as refused:
        stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=in_seconds(3600), interval_seconds=INTERVAL)

    assert refused.value.code == "invalid_schedule"
    assert ends(in_catalogue_order(catalogue)) == before
    assert Auction.objects.get(pk=sale.pk).stagger_seconds == 0


def test_the_clock_closes_them_in_catalogue_order(catalogue, sale, staff_user):
    first_end = timezone.now() + timedelta(hours=1)
    stagger_auction_lots(auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=INTERVAL)
    closed = []

    for step in range(4):
        run_due_work(now=first_end + timedelta(seconds=INTERVAL * step))
        closed.append(list(Lot.objects.filter(status=LotStatus.CLOSED).values_list("lot_number", flat=True)))

    assert [sorted(c, key=lambda n: (n is None, n or 0)) for c in closed] == [[1], [1, 2], [1, 2, 3], [1, 2, 3, None]]


# --- Over REST -----------------------------------------------------------------------------------


def stagger_over_rest(client: APIClient, slug: str = "autumn", **body):
    body.setdefault("first_ends_at", (timezone.now() + timedelta(hours=1)).isoformat())
    body.setdefault("interval_seconds", INTERVAL)
    return client.post(f"/api/auctions/{slug}/stagger/", body, format="json")


def test_staff_stagger_over_rest(catalogue, sale, staff_user, client_for):
    response = stagger_over_rest(client_for(staff_user))

    assert response.status_code == 200
    assert [lot["lot_number"] for lot in response.json()] == [1, 2, 3, None]
    assert ends(in_catalogue_order(catalogue)) == sorted(ends(in_catalogue_order(catalogue)))


@pytest.mark.parametrize(("who", "status"), [("seller", 403), ("bidder", 403), ("anonymous", 401)])
def test_nobody_else_may_stagger_over_rest(catalogue, sale, seller, bidder, client_for, who, status):
    client = {"seller": lambda: client_for(seller), "bidder": lambda: client_for(bidder), "anonymous": APIClient}[who]()
    before = ends(in_catalogue_order(catalogue))

    response = stagger_over_rest(client)

    assert response.status_code == status
    assert ends(in_catalogue_order(catalogue)) == before


def test_stagger_over_rest_checks_its_input(catalogue, sale, staff_user, client_for):
    client = client_for(staff_user)

    unknown = stagger_over_rest(client, slug="no-such-sale")
    negative = stagger_over_rest(client, interval_seconds=-5)
    past = stagger_over_rest(client, first_ends_at=(timezone.now() - timedelta(minutes=1)).isoformat())

    assert (unknown.status_code, unknown.json()["code"]) == (404, "auction_not_found")
    assert negative.status_code == 400
    assert (past.status_code, past.json()["code"]) == (400, "invalid_schedule")


# --- With a running clock ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_sleeping_clock_wakes_up_for_a_stagger(settings, make_lot, staff_user):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = 30
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    sale = await database_sync_to_async(Auction.objects.create)(title="Night sale", slug="night")
    second = await database_sync_to_async(make_lot)(auction=sale, lot_number=2, ends_at=in_seconds(3600))
    first = await database_sync_to_async(make_lot)(auction=sale, lot_number=1, ends_at=in_seconds(3600))

    async with running_clock():
        assert await database_sync_to_async(seconds_until_next_due)() == 30
        first_end = in_seconds(1)
        await database_sync_to_async(stagger_auction_lots)(
            auction=sale, actor=staff_user, first_ends_at=first_end, interval_seconds=1
        )
        first_closed = await wait_for_status(first.pk, LotStatus.CLOSED, timeout=2.5)
        second_closed = await wait_for_status(second.pk, LotStatus.CLOSED, timeout=2.5)

    assert first_end <= first_closed < first_end + ON_TIME
    second_end = first_end + timedelta(seconds=1)
    assert second_end <= second_closed < second_end + ON_TIME
