"""The seller's page: listing a lot with a photo, editing it, opening, closing and cancelling, and its errors."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from webtests.conftest import DESKTOP, PHONE, png, screenshot

pytestmark = pytest.mark.browser


def local_input(moment: datetime) -> str:
    """A datetime-local value; the browser runs in UTC (the fixture's timezone_id)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def row(page: Page, lot_id: int):
    return page.locator(f'#my-lots tr[data-lot-id="{lot_id}"]')


def test_a_seller_lists_a_lot_with_a_photo_and_sees_it_listed_and_on_its_page(api, open_page):
    seller = api.register("seller")
    page = open_page("/selling/", user=seller)
    expect(page.locator("#my-lots-empty")).to_be_visible()
    expect(page.locator("#zone-hint")).to_have_text("Times are in your time zone, UTC+00:00.")
    ends_at = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)

    page.get_by_label("Title").fill("Brass telescope")
    page.get_by_label("Description").fill("Three draws, in its case.")
    page.get_by_label("Starting price").fill("25.50")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_label("Reserve").fill("40")
    page.get_by_label("Ends at").fill(local_input(ends_at))
    page.get_by_label("Photo").set_input_files({"name": "telescope.png", "mimeType": "image/png", "buffer": png()})
    expect(page.locator("#image-preview")).to_be_visible()
    page.get_by_role("button", name="List lot").click()

    expect(page.locator("#lot-form .message")).to_have_text("“Brass telescope” is listed.")
    listed = page.locator("#my-lots tbody tr")
    expect(listed).to_have_count(1)
    expect(listed.locator("td")).to_have_text(
        ["Brass telescope", "Open", "€25.50", "0", re.compile(r"UTC"), re.compile("Edit.*Close now.*Cancel")]
    )
    lot_id = int(listed.get_attribute("data-lot-id"))
    lot = api.call("GET", f"/api/lots/{lot_id}/", user=seller)
    assert (lot["currency"], lot["reserve_price"], lot["status"]) == ("EUR", "40.00", "open")
    assert datetime.fromisoformat(lot["ends_at"]) == ends_at
    # The form is ready for the next lot.
    expect(page.get_by_label("Title")).to_have_value("")
    expect(page.locator("#image-preview")).to_be_hidden()

    listed.get_by_role("link", name="Brass telescope").click()
    expect(page.locator("#lot-title")).to_have_text("Brass telescope")
    expect(page.locator("#lot-media img")).to_have_attribute("src", re.compile(r"/media/lots/telescope.*\.png$"))


def test_the_seller_edits_a_lot_s_title(api, open_page):
    seller = api.register("seller")
    lot = api.create_lot(seller, title="Tin robot", starting_price="12.00", reserve_price="30.00")
    page = open_page("/selling/", user=seller)

    row(page, lot["id"]).get_by_role("button", name="Edit").click()
    expect(page.locator("#lot-form-heading")).to_have_text("Edit “Tin robot”")
    expect(page.get_by_label("Reserve")).to_have_value("30.00")
    page.get_by_label("Title").fill("Tin robot, boxed")
    page.get_by_role("button", name="Save changes").click()

    expect(page.locator("#lot-form .message")).to_have_text("“Tin robot, boxed” is saved.")
    expect(row(page, lot["id"]).get_by_role("link")).to_have_text("Tin robot, boxed")
    expect(page.locator("#lot-form-heading")).to_have_text("List a lot")
    assert api.call("GET", f"/api/lots/{lot['id']}/")["title"] == "Tin robot, boxed"


def test_after_bids_a_price_edit_shows_the_api_s_refusal_and_a_title_edit_still_saves(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, title="Carriage clock")
    api.bid(alice, lot["id"], "10.00")
    page = open_page("/selling/", user=seller)

    row(page, lot["id"]).get_by_role("button", name="Edit").click()
    page.get_by_label("Starting price").fill("15.00")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#lot-form .message")).to_have_text("Prices cannot change once bidding has started.")

    # Only what changed is sent: the unchanged prices do not trip the same rule.
    page.get_by_label("Starting price").fill("10.00")
    page.get_by_label("Title").fill("Carriage clock, French")
    page.get_by_role("button", name="Save changes").click()
    expect(row(page, lot["id"]).get_by_role("link")).to_have_text("Carriage clock, French")
    expect(row(page, lot["id"]).locator("td").nth(3)).to_have_text("1")


def test_a_draft_opens_now(api, open_page):
    seller = api.register("seller")
    draft = api.create_lot(seller, title="Enamel sign", draft=True)
    page = open_page("/selling/", user=seller)
    expect(row(page, draft["id"]).locator(".pill")).to_have_text("Draft")
    expect(row(page, draft["id"]).get_by_role("button", name="Close now")).to_have_count(0)

    row(page, draft["id"]).get_by_role("button", name="Open now").click()

    expect(row(page, draft["id"]).locator(".pill")).to_have_text("Open")
    expect(page.locator("#my-lots-section .message")).to_have_text("“Enamel sign” is open for bidding.")
    assert api.call("GET", f"/api/lots/{draft['id']}/")["status"] == "open"


def test_cancel_and_close_ask_first(api, open_page):
    seller = api.register("seller")
    to_cancel = api.create_lot(seller, title="Oak chair")
    to_close = api.create_lot(seller, title="Pine table")
    page = open_page("/selling/", user=seller)
    cancel_row = row(page, to_cancel["id"])

    cancel_row.get_by_role("button", name="Cancel").click()
    expect(cancel_row.get_by_role("group")).to_have_text(re.compile("Cancel “Oak chair”\\? It ends with no winner."))
    cancel_row.get_by_role("button", name="No, keep it").click()
    expect(cancel_row.get_by_role("button", name="Edit")).to_be_visible()
    assert api.call("GET", f"/api/lots/{to_cancel['id']}/")["status"] == "open"

    cancel_row.get_by_role("button", name="Cancel").click()
    cancel_row.get_by_role("button", name="Yes, cancel the lot").click()
    expect(cancel_row.locator(".pill")).to_have_text("Cancelled")
    expect(cancel_row.get_by_role("button")).to_have_count(0)
    assert api.call("GET", f"/api/lots/{to_cancel['id']}/")["status"] == "cancelled"

    close_row = row(page, to_close["id"])
    close_row.get_by_role("button", name="Close now").click()
    close_row.get_by_role("button", name="Yes, close it").click()
    expect(close_row.locator(".pill")).to_have_text("Ended")
    assert api.call("GET", f"/api/lots/{to_close['id']}/")["status"] == "closed"


def test_the_api_s_errors_show_next_to_their_fields(api, open_page):
    seller = api.register("seller")
    page = open_page("/selling/", user=seller)
    now = datetime.now(UTC)
    page.get_by_label("Title").fill("Silver spoon")
    page.get_by_label("Starting price").fill("12,50")
    page.get_by_label("Ends at").fill(local_input(now + timedelta(days=1)))
    page.get_by_label("Photo").set_input_files(
        {"name": "spoon.png", "mimeType": "image/png", "buffer": b"not a picture"}
    )
    page.get_by_role("button", name="List lot").click()

    expect(page.locator("#starting_price-error")).to_have_text("starting_price is not a number.")
    expect(page.get_by_label("Starting price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#image-error")).to_have_text(re.compile("Upload a valid image"))
    expect(page.locator("#lot-form .message")).to_have_text("Please correct the fields marked above.")

    # A rule of the service names its field too: the end before the start.
    page.get_by_label("Starting price").fill("12.50")
    page.get_by_label("Photo").set_input_files([])
    page.get_by_label("Starts at").fill(local_input(now + timedelta(days=3)))
    page.get_by_role("button", name="List lot").click()
    expect(page.locator("#ends_at-error")).to_have_text("The lot must end after it starts.")
    expect(page.locator("#starting_price-error")).to_be_hidden()
    expect(page.get_by_label("Ends at")).to_be_focused()
    assert api.call("GET", f"/api/lots/?seller={seller}", user=seller)["count"] == 0


def test_a_seller_with_no_lots_is_asked_to_list_one(api, open_page):
    newcomer = api.register("newcomer")
    page = open_page("/", user=newcomer)
    page.get_by_role("link", name="Selling").click()

    expect(page.get_by_role("link", name="Selling")).to_have_attribute("aria-current", "page")
    expect(page.locator("#my-lots-empty")).to_contain_text("You aren't selling anything yet.")
    expect(page.locator("#my-lots")).to_be_hidden()
    page.get_by_role("link", name="List your first lot").click()
    expect(page.get_by_label("Title")).to_be_focused()


def test_screenshots_of_the_selling_page(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    api.create_lot(seller, title="Marble bust", starting_price="80.00", image=png())
    bid_on = api.create_lot(seller, title="Walnut writing desk", starting_price="120.00", currency="GBP")
    api.bid(alice, bid_on["id"], "120.00")
    api.create_lot(seller, title="Pair of candlesticks", draft=True)
    cancelled = api.create_lot(seller, title="Cracked vase")
    api.call("POST", f"/api/lots/{cancelled['id']}/cancel/", user=seller)

    for name, viewport in (("selling-desktop", DESKTOP), ("selling-phone", PHONE)):
        page = open_page("/selling/", user=seller, viewport=viewport)
        expect(page.locator("#my-lots tbody tr")).to_have_count(4)
        expect(page.get_by_label("Currency")).to_have_value("USD")
        screenshot(page, name)
