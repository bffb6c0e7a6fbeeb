"""What bidding adds to the lots app's admin pages (`bids/admin.py` registers them again)."""

import re

import pytest

from testsupport.bidding import bid

pytestmark = pytest.mark.django_db


def test_a_lots_admin_page_lists_its_bids(client, staff_user, make_lot, bidder):
    lot = make_lot()
    bid(lot, bidder, "123.00")
    client.force_login(staff_user)

    page = client.get(f"/admin/lots/lot/{lot.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    # The bids inline: its formset, with the bid's row.
    assert 'name="bids-TOTAL_FORMS"' in text
    assert re.search(r'<td class="field-amount">\s*<p>123\.00</p>', text)
