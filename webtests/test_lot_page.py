"""What the lot page says before anyone clicks: who may not bid, the sale's name, the watch state, times."""

import re

import pytest
from playwright.sync_api import expect

from webtests.conftest import STAFF_USERNAME

pytestmark = pytest.mark.browser


def test_the_seller_and_staff_are_told_they_cannot_bid_instead_of_shown_the_form(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, title="Brass compass")

    for user, reason in (
        (seller, "You can't bid on your own lot."),
        (STAFF_USERNAME, "Staff accounts can't bid."),
    ):
        page = open_page(f"/lots/{lot['id']}/", user=user)
        expect(page.locator("#bid-barred")).to_have_text(reason)
        expect(page.locator("#bid-form")).to_be_hidden()

    page = open_page(f"/lots/{lot['id']}/", user=alice)
    expect(page.get_by_label("Your bid")).to_be_visible()
    expect(page.locator("#bid-barred")).to_be_hidden()


def test_the_breadcrumb_names_the_sale_and_the_watch_button_says_its_state(api, open_page):
    alice = api.register("alice")
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data={"title": "Spring Clocks", "slug": "spring-clocks"})
    lot = api.create_lot(STAFF_USERNAME, auction="spring-clocks", title="Carriage clock")
    page = open_page(f"/lots/{lot['id']}/", user=alice)

    expect(page.locator("#lot-sale-link")).to_have_text("Sale: Spring Clocks")
    watch = page.locator("#watch-toggle")
    expect(watch).to_have_text("Watch this lot")
    watch.click()
    expect(watch).to_have_text("Watching ✓")
    expect(watch).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(page.locator("#watch-toggle")).to_have_text("Watching ✓")
    page.locator("#watch-toggle").click()
    expect(page.locator("#watch-toggle")).to_have_text("Watch this lot")


def test_times_carry_their_zone_and_older_bids_their_date(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, title="Tin robot")
    api.bid(alice, lot["id"], "10.00")
    page = open_page(f"/lots/{lot['id']}/")

    # The browser runs in UTC (the fixture's timezone_id).
    expect(page.locator("#lot-ends-at")).to_contain_text("UTC")
    expect(page.locator("#bid-history time").first).to_have_attribute("title", re.compile("UTC"))
    shown = page.evaluate(
        """async () => {
            const { whenShort } = await import("/static/js/format.js");
            const now = Date.parse("2026-03-02T12:00:00Z");
            return [whenShort("2026-03-02T09:30:05Z", now), whenShort("2026-01-15T09:30:05Z", now)];
        }"""
    )
    assert shown == ["09:30:05 AM", "Jan 15, 09:30:05 AM"]


def test_a_draft_shows_its_seller_no_chat(api, open_page):
    seller = api.register("seller")
    draft = api.create_lot(seller, title="Unfinished listing", draft=True)
    page = open_page(f"/lots/{draft['id']}/", user=seller)

    expect(page.locator("#lot-status")).to_have_text("Draft")
    expect(page.locator("#chat")).to_be_hidden()
