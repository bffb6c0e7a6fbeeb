"""Lot lifecycle services: create, update, delete, open, close, cancel, watch."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from bids.exceptions import BidRejected
from lots.exceptions import LotActionRefused, NotLotManager
from lots.models import Lot, LotStatus, Watch
from lots.services import (
    cancel_lot,
    close_lot,
    create_lot,
    delete_lot,
    open_lot,
    unwatch_lot,
    update_lot,
    watch_lot,
)
from ops.exceptions import DomainError, InvalidInput
from testsupport.bidding import bid, event_types, lot_events

pytestmark = pytest.mark.django_db

D = Decimal


def in_(**delta) -> timezone.datetime:
    return timezone.now() + timedelta(**delta)


# --- create_lot ------------------------------------------------------------------


def test_create_lot_opens_now_by_default(seller):
    now = timezone.now()
    ends_at = now + timedelta(hours=2)

    lot = create_lot(seller=seller, title="Lamp", starting_price="10", ends_at=ends_at, now=now)

    assert lot.status == LotStatus.OPEN
    assert lot.starts_at == now
    assert lot.currency == django_settings.AUCTION_DEFAULT_CURRENCY
    assert lot.starting_price == D("10.00")
    assert lot.hard_ends_at == ends_at + django_settings.AUCTION_DEFAULT_MAX_EXTENSION
    assert (lot.current_price, lot.bid_count, lot.seq) == (None, 0, 0)


def test_create_lot_in_the_future_is_scheduled(seller):
    starts_at = in_(hours=1)

    lot = create_lot(seller=seller, title="Lamp", starting_price="10", starts_at=starts_at, ends_at=in_(hours=2))

    assert (lot.status, lot.starts_at) == (LotStatus.SCHEDULED, starts_at)


def test_create_draft(seller):
    lot = create_lot(seller=seller, title="Lamp", starting_price="10", ends_at=in_(hours=2), draft=True)

    assert lot.status == LotStatus.DRAFT


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"ends_at": "past"}, "invalid_schedule"),
        ({"starts_at": "later", "ends_at": "soon"}, "invalid_schedule"),
        ({"hard_ends_at": "soon"}, "invalid_schedule"),
        ({"reserve_price": "9.99"}, "invalid_price"),
        ({"buy_now_price": "10.00"}, "invalid_price"),
        ({"reserve_price": "50", "buy_now_price": "40"}, "invalid_price"),
        ({"currency": "XYZ"}, "invalid_currency"),
        ({"starting_price": "0"}, "invalid_amount"),
        ({"starting_price": "abc"}, "invalid_amount"),
        ({"bid_increment": "-1"}, "invalid_amount"),
        ({"currency": "JPY", "starting_price": "10.50"}, "invalid_amount"),
    ],
)
def test_create_lot_refuses_bad_input(seller, fields, code):
    times = {"past": in_(seconds=-1), "soon": in_(minutes=30), "later": in_(hours=2)}
    values = {"title": "Lamp", "starting_price": "10.00", "ends_at": in_(hours=1)}
    values |= {k: times.get(v, v) if k.endswith("_at") else v for k, v in fields.items()}

    with pytest.raises(InvalidInput) as caught:
        create_lot(seller=seller, **values)

    assert caught.value.code == code
    assert not Lot.objects.exists()


# --- update_lot ------------------------------------------------------------------


def test_seller_updates_an_open_lot_and_watchers_hear_of_it(make_lot, seller):
    lot = make_lot()
    new_end = in_(hours=3)

    lot = update_lot(lot_id=lot.pk, actor=seller, changes={"title": "Signed lamp", "ends_at": new_end})

    assert (lot.title, lot.ends_at) == ("Signed lamp", new_end)
    assert lot.hard_ends_at == new_end + django_settings.AUCTION_DEFAULT_MAX_EXTENSION
    [event] = lot_events(lot)
    assert (event["type"], event["seq"], event["lot"]["title"]) == ("LOT_UPDATED", 1, "Signed lamp")
    assert Lot.objects.get(pk=lot.pk).seq == 1


def test_updating_a_draft_records_no_event(make_lot, seller):
    lot = make_lot(draft=True)

    update_lot(lot_id=lot.pk, actor=seller, changes={"starting_price": "20", "reserve_price": "30"})

    lot.refresh_from_db()
    assert (lot.starting_price, lot.reserve_price, lot.seq) == (D("20.00"), D("30.00"), 0)
    assert event_types(lot) == []


def test_staff_may_update_any_lot(make_lot, staff_user):
    lot = make_lot()

    assert update_lot(lot_id=lot.pk, actor=staff_user, changes={"title": "Fixed typo"}).title == "Fixed typo"


def test_only_seller_or_staff_update(make_lot, bidder):
    lot = make_lot()

    with pytest.raises(NotLotManager) as caught:
        update_lot(lot_id=lot.pk, actor=bidder, changes={"title": "Mine now"})

    assert caught.value.code == "not_lot_manager"
    assert Lot.objects.get(pk=lot.pk).title == "Art deco lamp"


@pytest.mark.parametrize("field", ["starting_price", "reserve_price", "buy_now_price", "bid_increment", "currency"])
def test_prices_are_frozen_once_bidding_started(make_lot, seller, bidder, field):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")
    value = "EUR" if field == "currency" else "500.00"

    with pytest.raises(LotActionRefused) as caught:
        update_lot(lot_id=lot.pk, actor=seller, changes={field: value})

    assert caught.value.code == "lot_has_bids"
    assert Lot.objects.get(pk=lot.pk).seq == 1


def test_open_lots_start_cannot_move(make_lot, seller):
    lot = make_lot()

    with pytest.raises(LotActionRefused) as caught:
        update_lot(lot_id=lot.pk, actor=seller, changes={"starts_at": in_(minutes=5)})

    assert caught.value.code == "lot_open"


def test_open_lot_cannot_be_moved_into_the_past(make_lot, seller):
    lot = make_lot()

    with pytest.raises(InvalidInput) as caught:
        update_lot(lot_id=lot.pk, actor=seller, changes={"ends_at": in_(seconds=-5)})

    assert caught.value.code == "invalid_schedule"
    assert Lot.objects.get(pk=lot.pk).ends_at == lot.ends_at


def test_update_checks_the_price_rules(make_lot, seller):
    lot = make_lot(draft=True, starting_price="10.00")

    with pytest.raises(InvalidInput) as caught:
        update_lot(lot_id=lot.pk, actor=seller, changes={"reserve_price": "5.00"})

    assert caught.value.code == "invalid_price"


def test_ended_lot_cannot_be_updated(make_lot, seller):
    lot = close_lot(lot_id=make_lot().pk, actor=seller)

    with pytest.raises(LotActionRefused) as caught:
        update_lot(lot_id=lot.pk, actor=seller, changes={"title": "Again"})

    assert caught.value.code == "lot_closed"


# --- delete_lot ------------------------------------------------------------------


def test_seller_deletes_a_lot_without_bids(make_lot, seller):
    lot = make_lot()

    delete_lot(lot_id=lot.pk, actor=seller)

    assert not Lot.objects.filter(pk=lot.pk).exists()


def test_lot_with_bids_cannot_be_deleted(make_lot, seller, bidder):
    lot = make_lot()
    bid(lot, bidder, "10.00")

    with pytest.raises(LotActionRefused) as caught:
        delete_lot(lot_id=lot.pk, actor=seller)

    assert caught.value.code == "lot_has_bids"
    assert Lot.objects.filter(pk=lot.pk).exists()


def test_only_seller_or_staff_delete(make_lot, bidder):
    lot = make_lot()

    with pytest.raises(NotLotManager):
        delete_lot(lot_id=lot.pk, actor=bidder)

    assert Lot.objects.filter(pk=lot.pk).exists()


def test_deleting_an_unknown_lot_is_not_found(seller):
    with pytest.raises(DomainError) as caught:
        delete_lot(lot_id=424242, actor=seller)

    assert caught.value.code == "lot_not_found"


# --- open_lot --------------------------------------------------------------------


def test_open_lot_opens_a_scheduled_lot_early(make_lot, seller):
    lot = make_lot(starts_at=in_(hours=1))
    now = timezone.now()

    lot = open_lot(lot_id=lot.pk, actor=seller, now=now)

    assert (lot.status, lot.starts_at) == (LotStatus.OPEN, now)


@pytest.mark.parametrize("fields", [{"draft": True}, {"starts_at": in_(hours=1)}], ids=["draft", "scheduled"])
def test_open_lot_opens_it_now(make_lot, seller, bidder, fields):
    lot = make_lot(**fields)
    now = timezone.now()

    lot = open_lot(lot_id=lot.pk, actor=seller, now=now)

    assert lot.status == LotStatus.OPEN
    assert lot.starts_at <= now
    [event] = lot_events(lot)
    assert (event["type"], event["seq"], event["lot"]["status"]) == ("LOT_OPENED", 1, "open")
    assert bid(lot, bidder, "10.00").leading


def test_open_lot_twice_is_refused(make_lot, seller):
    lot = make_lot()

    with pytest.raises(LotActionRefused) as caught:
        open_lot(lot_id=lot.pk, actor=seller)

    assert caught.value.code == "lot_open"
    assert Lot.objects.get(pk=lot.pk).seq == 0


def test_open_ended_lot_is_refused(make_lot, seller):
    lot = cancel_lot(lot_id=make_lot(draft=True).pk, actor=seller)

    with pytest.raises(LotActionRefused) as caught:
        open_lot(lot_id=lot.pk, actor=seller)

    assert caught.value.code == "lot_closed"


def test_open_lot_whose_end_passed_is_refused(make_lot, seller):
    lot = make_lot(draft=True)

    with pytest.raises(InvalidInput) as caught:
        open_lot(lot_id=lot.pk, actor=seller, now=lot.ends_at)

    assert caught.value.code == "invalid_schedule"
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.DRAFT


def test_only_seller_or_staff_open(make_lot, bidder, staff_user):
    lot = make_lot(starts_at=in_(hours=1))

    with pytest.raises(NotLotManager):
        open_lot(lot_id=lot.pk, actor=bidder)
    assert open_lot(lot_id=lot.pk, actor=staff_user).status == LotStatus.OPEN


def test_someone_elses_draft_is_not_found_not_refused(make_lot, bidder, staff_user):
    """Refusing would confirm the draft exists (issue 15)."""
    lot = make_lot(draft=True)

    with pytest.raises(DomainError) as caught:
        open_lot(lot_id=lot.pk, actor=bidder)
    assert caught.value.code == "lot_not_found"
    assert open_lot(lot_id=lot.pk, actor=staff_user).status == LotStatus.OPEN


# --- close_lot -------------------------------------------------------------------


def test_close_lot_sells_to_the_leader_at_the_current_price(
    make_lot, seller, bidder, other_bidder, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00", reserve_price="20.00")
    bid(lot, bidder, "10.00", max_amount="30.00")
    bid(lot, other_bidder, "21.00")
    for user in (seller, bidder, other_bidder):
        inbox.watch_user(user)
    now = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        lot = close_lot(lot_id=lot.pk, actor=seller, now=now)

    lot.refresh_from_db()
    assert (lot.status, lot.winner, lot.final_price, lot.closed_at) == (LotStatus.CLOSED, bidder, D("21.50"), now)
    ended = lot_events(lot)[-1]
    assert ended["type"] == "AUCTION_ENDED"
    assert ended["seq"] == lot.seq
    assert ended["lot"] == {
        "id": lot.pk,
        "status": "closed",
        "winner": "Bidder 1",  # alice, the first to bid, by her alias
        "final_price": "21.50",
        "closed_at": ended["lot"]["closed_at"],
    }
    [won] = inbox.user_messages(bidder)
    assert (won["type"], won["final_price"], won["lot_id"]) == ("WON", "21.50", lot.pk)
    [sold] = inbox.user_messages(seller)
    assert (sold["type"], sold["winner"], sold["final_price"]) == ("LOT_SOLD", "alice", "21.50")
    assert inbox.user_messages(other_bidder) == []


def test_close_lot_below_the_reserve_is_unsold(make_lot, seller, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot(starting_price="10.00", reserve_price="50.00")
    bid(lot, bidder, "10.00", max_amount="49.99")
    inbox.watch_user(seller)
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True):
        close_lot(lot_id=lot.pk, actor=seller)

    lot.refresh_from_db()
    assert (lot.status, lot.winner, lot.final_price) == (LotStatus.CLOSED, None, None)
    [unsold] = inbox.user_messages(seller)
    assert (unsold["type"], unsold["reserve_met"], unsold["bid_count"]) == ("LOT_UNSOLD", False, 1)
    assert inbox.user_messages(bidder) == []
    assert lot_events(lot)[-1]["lot"]["winner"] is None


def test_close_lot_without_bids_is_unsold(make_lot, seller, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_user(seller)

    with django_capture_on_commit_callbacks(execute=True):
        lot = close_lot(lot_id=lot.pk, actor=seller)

    assert (lot.status, lot.winner, lot.final_price) == (LotStatus.CLOSED, None, None)
    [unsold] = inbox.user_messages(seller)
    assert (unsold["type"], unsold["bid_count"]) == ("LOT_UNSOLD", 0)


def test_lot_closes_exactly_once(make_lot, seller, bidder, staff_user):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    close_lot(lot_id=lot.pk, actor=None)

    for actor in (seller, staff_user, None):
        with pytest.raises(LotActionRefused) as caught:
            close_lot(lot_id=lot.pk, actor=actor)
        assert caught.value.code == "lot_closed"

    assert event_types(lot) == ["NEW_BID", "AUCTION_ENDED"]
    assert Lot.objects.get(pk=lot.pk).winner == bidder


def test_closing_a_lot_that_never_opened_is_refused(make_lot, seller):
    lot = make_lot(draft=True)

    with pytest.raises(LotActionRefused) as caught:
        close_lot(lot_id=lot.pk, actor=seller)

    assert caught.value.code == "lot_not_open"


def test_only_seller_or_staff_close(make_lot, bidder, other_bidder, staff_user):
    lot = make_lot()
    bid(lot, bidder, "10.00")

    for someone in (bidder, other_bidder):
        with pytest.raises(NotLotManager) as caught:
            close_lot(lot_id=lot.pk, actor=someone)
        assert caught.value.code == "not_lot_manager"
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN

    assert close_lot(lot_id=lot.pk, actor=staff_user).winner == bidder


# --- cancel_lot ------------------------------------------------------------------


def test_cancel_lot_ends_it_without_a_winner(make_lot, seller, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True):
        cancel_lot(lot_id=lot.pk, actor=seller)

    lot.refresh_from_db()
    assert (lot.status, lot.winner, lot.final_price) == (LotStatus.CANCELLED, None, None)
    assert lot.closed_at is not None
    ended = lot_events(lot)[-1]
    assert (ended["type"], ended["seq"], ended["lot"]["status"]) == ("AUCTION_ENDED", 2, "cancelled")
    assert inbox.user_types(bidder) == ["LOT_CANCELLED"]
    with pytest.raises(BidRejected) as caught:
        bid(lot, bidder, "20.00")
    assert caught.value.code == "lot_closed"


def test_cancel_twice_or_after_close_is_refused(make_lot, seller):
    cancelled = cancel_lot(lot_id=make_lot().pk, actor=seller)
    closed = close_lot(lot_id=make_lot().pk, actor=seller)

    for lot in (cancelled, closed):
        with pytest.raises(LotActionRefused) as caught:
            cancel_lot(lot_id=lot.pk, actor=seller)
        assert caught.value.code == "lot_closed"
    assert Lot.objects.get(pk=closed.pk).status == LotStatus.CLOSED


def test_only_seller_or_staff_cancel(make_lot, bidder, staff_user):
    lot = make_lot()

    with pytest.raises(NotLotManager):
        cancel_lot(lot_id=lot.pk, actor=bidder)
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN

    assert cancel_lot(lot_id=lot.pk, actor=staff_user).status == LotStatus.CANCELLED


# --- watch_lot / unwatch_lot -------------------------------------------------------


def test_watch_is_idempotent(make_lot, bidder):
    lot = make_lot()

    watch_lot(lot_id=lot.pk, user=bidder)
    watch_lot(lot_id=lot.pk, user=bidder)

    assert Watch.objects.filter(user=bidder, lot=lot).count() == 1


def test_watch_unknown_lot_is_not_found(bidder):
    with pytest.raises(DomainError) as caught:
        watch_lot(lot_id=424242, user=bidder)

    assert caught.value.code == "lot_not_found"
    assert not Watch.objects.exists()


def test_unwatch_removes_only_that_users_watch(make_lot, bidder, other_bidder):
    lot = make_lot()
    watch_lot(lot_id=lot.pk, user=bidder)
    watch_lot(lot_id=lot.pk, user=other_bidder)

    unwatch_lot(lot_id=lot.pk, user=bidder)
    unwatch_lot(lot_id=lot.pk, user=bidder)

    assert list(Watch.objects.values_list("user__username", flat=True)) == ["bob"]
