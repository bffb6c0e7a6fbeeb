"""What bidding adds to the admin: a lot's bids on its page, bids labelled by name, and voiding a
bidder's bids on any lot through the voiding service."""

import re
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bids import services
from bids.models import Bid, ChatMessage, VoidReason
from lots.models import LotStatus
from lots.services import close_lot
from testsupport.bidding import bid, lot_events

pytestmark = pytest.mark.django_db

D = Decimal
BIDS = "/admin/bids/bid/"


@pytest.fixture
def admin(client, staff_user):
    client.force_login(staff_user)
    return client


def query_count(admin, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert admin.get(url).status_code == 200
    return len(queries)


def test_a_lots_admin_page_lists_its_bids(admin, make_lot, bidder):
    lot = make_lot()
    bid(lot, bidder, "123.00")

    page = admin.get(f"/admin/lots/lot/{lot.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    # The bids inline: its formset, with the bid's row, labelled by name.
    assert 'name="bids-TOTAL_FORMS"' in text
    assert re.search(r'<td class="field-amount">\s*<p>123\.00</p>', text)
    assert "123.00 USD by alice on Art deco lamp" in text


def test_a_bid_is_labelled_with_its_currency_bidder_and_lot(make_lot, bidder):
    lot = make_lot(title="Vintage watch", currency="EUR")
    placed = bid(lot, bidder, "450.00").bid

    assert str(Bid.objects.get(pk=placed.pk)) == "450.00 EUR by alice on Vintage watch"


def test_a_chat_message_is_labelled_with_its_author_and_lot(make_lot, bidder):
    lot = make_lot(title="Vintage watch")
    message = services.post_chat_message(lot_id=lot.pk, author=bidder, text="Does it still tick?")

    assert str(ChatMessage.objects.get(pk=message.pk)) == "alice on Vintage watch: Does it still tick?"


def test_pages_showing_bids_read_them_in_constant_queries(admin, make_lot, make_user):
    lot = make_lot(bid_increment="1.00")
    bid(lot, make_user("first"), "10.00")
    pages = (BIDS, f"/admin/lots/lot/{lot.pk}/change/")
    with_one = [query_count(admin, url) for url in pages]

    for n in range(4):
        bid(lot, make_user(f"later{n}"), str(11 + n))

    assert [query_count(admin, url) for url in pages] == with_one


# --- Voiding a bidder's bids on any lot --------------------------------------------------------


def void_action(admin, bids, **extra):
    return admin.post(
        BIDS, {"action": "void_bidders_bids", "_selected_action": [b.pk for b in bids], **extra}, follow=True
    )


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_voiding_asks_first_and_voids_nothing_until_confirmed(admin, make_lot, bidder, other_bidder):
    lot = make_lot(title="Vintage watch")
    bid(lot, other_bidder, "10.00")
    alices = bid(lot, bidder, "15.00").bid

    page = void_action(admin, [alices])

    assert page.status_code == 200
    text = page.content.decode()
    assert "alice on Vintage watch (open)" in text
    assert 'name="post" value="yes"' in text
    assert f'name="_selected_action" value="{alices.pk}"' in text
    lot.refresh_from_db()
    assert (lot.current_price, lot.high_bidder) == (D("15.00"), bidder)
    assert not Bid.objects.exclude(void_reason="").exists()


def test_staff_void_a_bidders_bids_on_a_lot_outside_any_sale_through_the_service(
    admin, make_lot, bidder, other_bidder, staff_user, django_capture_on_commit_callbacks
):
    lot = make_lot(title="Vintage watch", bid_increment="1.00")
    assert lot.auction_id is None
    bid(lot, other_bidder, "10.00", max_amount="30.00")
    first = bid(lot, bidder, "20.00", max_amount="80.00").bid  # bob's proxy answers 30, alice leads at 31
    bid(lot, bidder, "20.00", max_amount="90.00")  # a private raise

    with (
        mock.patch("bids.admin.services.void_bids", wraps=services.void_bids) as void_bids,
        mock.patch("lots.events.broadcast_many") as broadcast,
        django_capture_on_commit_callbacks(execute=True) as after_commit,
    ):
        response = void_action(admin, [first], post="yes")

    assert "Voided 2 bid(s) of alice on Vintage watch." in shown_messages(response)
    void_bids.assert_called_once_with(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)
    # The lot's price and leader recomputed without alice.
    lot.refresh_from_db()
    assert (lot.current_price, lot.high_bidder, lot.high_max_amount, lot.bid_count) == (
        D("10.00"),
        other_bidder,
        D("30.00"),
        1,
    )
    # The audit trail: every row from alice's first bid on marked, with who voided it and when.
    marked = Bid.objects.filter(lot=lot).exclude(void_reason="")
    assert {(row.bidder_id, row.void_reason) for row in marked} == {
        (bidder.pk, VoidReason.VOIDED),
        (other_bidder.pk, VoidReason.SUPERSEDED),
    }
    assert all(row.voided_by == staff_user and row.voided_at for row in marked)
    # The room told, after the commit.
    assert after_commit
    assert lot_events(lot)[-1]["type"] == "BIDS_VOIDED"
    assert broadcast.called


def test_voiding_on_a_closed_lot_is_refused_with_a_message(admin, make_lot, bidder, staff_user):
    lot = make_lot(title="Vintage watch")
    placed = bid(lot, bidder, "12.00").bid
    close_lot(lot_id=lot.pk, actor=staff_user)

    response = void_action(admin, [placed], post="yes")

    assert response.status_code == 200
    assert "alice on Vintage watch: Bids can be voided only while the lot is open. (lot_not_open)" in shown_messages(
        response
    )
    lot.refresh_from_db()
    assert (lot.status, lot.winner, lot.final_price) == (LotStatus.CLOSED, bidder, D("12.00"))
    assert not Bid.objects.exclude(void_reason="").exists()


def test_voiding_several_lots_and_bidders_at_once(admin, make_lot, bidder, other_bidder, third_bidder):
    lamp, watch = make_lot(title="Lamp", bid_increment="1.00"), make_lot(title="Watch", bid_increment="1.00")
    bid(lamp, third_bidder, "10.00")
    on_lamp = [bid(lamp, bidder, "11.00").bid, bid(lamp, other_bidder, "12.00").bid]
    on_watch = bid(watch, bidder, "10.00").bid

    response = void_action(admin, [*on_lamp, on_watch], post="yes")

    assert set(shown_messages(response)) == {
        "Voided 1 bid(s) of alice on Lamp.",
        "Voided 1 bid(s) of bob on Lamp.",
        "Voided 1 bid(s) of alice on Watch.",
    }
    lamp.refresh_from_db()
    watch.refresh_from_db()
    assert (lamp.current_price, lamp.high_bidder) == (D("10.00"), third_bidder)
    assert (watch.current_price, watch.bid_count) == (None, 0)
