"""What bidding adds to the admin: a lot's bids on its page, bids labelled by name."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bids import services
from bids.models import Bid, ChatMessage
from testsupport.bidding import bid

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
