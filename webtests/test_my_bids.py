"""The My bids page: one row per lot you bid on, with where you stand, kept current by your notices (issue 19)."""

import re

import pytest
from playwright.sync_api import Page, expect

from webtests.conftest import PHONE, screenshot

pytestmark = pytest.mark.browser

SHOWN_TIME = re.compile(r"\d{4}.* UTC$")
# Seconds until a lot ends: the steps before it must fit, on a loaded machine too.
LOT_SECONDS = 20


def open_my_bids(open_page, user: str, **options) -> Page:
    """/me/ once the notices socket is live: its first catch-up read comes after the socket joined the user's room."""
    page = open_page(None, user=user, **options)
    with page.expect_response(lambda response: "/api/users/me/notifications/" in response.url):
        page.goto("/me/")
    return page


def test_one_row_per_lot_says_winning_or_outbid_and_follows_the_notices_without_a_reload(api, open_page):
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    lamp = api.create_lot(seller, title="Art deco lamp", starting_price="10.00", ends_in=600)
    vase = api.create_lot(seller, title="Enamel vase", starting_price="10.00", ends_in=900)
    api.call("POST", f"/api/lots/{lamp['id']}/bids/", user=alice, data={"amount": "10.00", "max_amount": "25.00"})
    api.bid(alice, vase["id"], "10.00")
    api.bid(bob, vase["id"], "11.00")
    api.bid(alice, vase["id"], "12.00")

    page = open_my_bids(open_page, alice)
    rows = page.locator("#my-bids tbody tr")
    lamp_row, vase_row = rows.nth(0), rows.nth(1)
    # One row per lot however many bids, the one ending soonest first.
    expect(rows).to_have_count(2)
    expect(lamp_row).to_have_attribute("data-lot-id", str(lamp["id"]))
    expect(lamp_row.get_by_role("link", name="Art deco lamp")).to_have_attribute("href", f"/lots/{lamp['id']}/")
    expect(lamp_row.locator("td").nth(1)).to_contain_text("$10.00")
    # Her own maximum, hers alone to see.
    expect(lamp_row.locator(".max-note")).to_have_text("max $25.00")
    expect(lamp_row.locator("td").nth(2)).to_have_text("$10.00")
    expect(lamp_row.locator(".pill")).to_have_text("Winning")
    expect(lamp_row.locator("time")).to_have_attribute("datetime", lamp["ends_at"])
    expect(lamp_row.locator("time")).to_have_text(SHOWN_TIME)
    expect(vase_row.get_by_role("link")).to_have_text("Enamel vase")
    expect(vase_row.locator("td").nth(1)).to_have_text("$12.00")
    expect(vase_row.locator(".pill")).to_have_text("Winning")
    page.evaluate("window.notReloaded = true")

    outbid = api.bid(bob, lamp["id"], "30.00")

    expect(page.locator("#notices")).to_contain_text("You've been outbid on “Art deco lamp”")
    expect(lamp_row.locator(".pill")).to_have_text("Outbid")
    price = outbid["lot"]["current_price"]
    expect(lamp_row.locator("td").nth(2)).to_have_text(f"${price}")
    # Her maximum answered bob's bid, and is spent.
    expect(lamp_row.locator("td").nth(1)).to_have_text("$25.00")
    expect(vase_row.locator(".pill")).to_have_text("Winning")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "my-bids-desktop")

    phone = open_my_bids(open_page, alice, viewport=PHONE)
    expect(phone.locator("#my-bids .pill")).to_have_text(["Outbid", "Winning"])
    screenshot(phone, "my-bids-phone")

    api.call("POST", f"/api/lots/{vase['id']}/cancel/", user=seller)

    # Told it was cancelled, the page reads its rows again: ended lots after open ones.
    expect(page.locator("#my-bids .pill")).to_have_text(["Outbid", "Cancelled"])
    expect(rows.nth(1).get_by_role("link")).to_have_text("Enamel vase")
    assert page.evaluate("window.notReloaded") is True


def test_someone_who_never_bid_is_told_so(api, open_page):
    carol = api.register("carol")

    page = open_page("/me/", user=carol)

    expect(page.locator("#my-bids-empty")).to_be_visible()
    expect(page.locator("#my-bids")).to_be_hidden()


def test_a_lot_you_were_outbid_on_reads_lost_once_it_ends_without_a_reload(api, open_page):
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    # Long enough for the set-up below on a loaded machine; the page must see the end come.
    clock = api.create_lot(seller, title="Mantel clock", starting_price="10.00", ends_in=LOT_SECONDS)
    api.bid(alice, clock["id"], "10.00")
    api.bid(bob, clock["id"], "11.00")
    page = open_my_bids(open_page, alice)
    row = page.locator("#my-bids tbody tr").first
    expect(row.locator(".pill")).to_have_text("Outbid")
    page.evaluate("window.notReloaded = true")

    # No notice tells a loser: the page reads its table again after the lot's end.
    expect(row.locator(".pill")).to_have_text("Lost", timeout=(LOT_SECONDS + 30) * 1000)
    assert page.evaluate("window.notReloaded") is True
