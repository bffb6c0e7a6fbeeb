"""The lot list's search, filters and pages: the state in the URL, reload, back, the empty state, live prices."""

import re

import pytest
from playwright.sync_api import expect

from webtests.conftest import PHONE, STAFF_USERNAME, screenshot

pytestmark = pytest.mark.browser

# The list page's reads of lots; its sale sockets are another path.
LIST_READS = re.compile(r"/api/lots/\?")
# Seconds: later than any other browser test's lots end or start.
LATE = 20 * 3600


def titles(page):
    return page.locator("#lots-results .card-title")


def test_search_filters_and_pages_keep_their_state_in_the_url(api, open_page):
    seller, bidder = api.register("seller"), api.register("bidder")
    # The server is shared with the other browser tests: only this test's lots carry the word, and
    # they end and start late, behind the others' lots in the overview's first pages.
    word = f"walnut{next(api.names)}"
    chairs = [f"{word} chair {n:02}" for n in range(22)]
    for n, title in enumerate(chairs):
        api.create_lot(seller, title=title, starting_price=f"{10 + n}.00", ends_in=LATE)
    slug = f"walnut-sale-{next(api.names)}"
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data={"title": f"Sale {slug}", "slug": slug})
    mirror = api.create_lot(STAFF_USERNAME, auction=slug, title=f"{word} mirror", starting_price="50.00", ends_in=LATE)
    api.create_lot(seller, title=f"{word} desk", starting_price="99.00", starts_in=LATE, ends_in=2 * LATE)

    # The overview's sections link to all of theirs, a page at a time.
    page = open_page("/")
    page.locator("#lots-open-all").click()
    expect(page).to_have_url(re.compile(r"/\?status=open$"))
    expect(page.get_by_label("Status")).to_have_value("open")
    expect(page.locator("#pager-position")).to_have_text(re.compile(r"^Page 1 of \d+$"))

    page.get_by_label("Search").fill(word)
    page.get_by_label("Search").press("Enter")
    expect(page).to_have_url(re.compile(rf"/\?search={word}&status=open$"))
    expect(page.locator("#results-heading")).to_have_text(f"23 lots matching “{word}”")
    expect(titles(page)).to_have_text(chairs[:20])
    expect(page.locator("#pager-position")).to_have_text("Page 1 of 2")
    expect(page.locator("#pager-previous")).to_have_attribute("aria-disabled", "true")
    screenshot(page, "lots-desktop")

    page.get_by_role("link", name="Next →").click()
    expect(page).to_have_url(re.compile(rf"/\?search={word}&status=open&page=2$"))
    expect(page.locator("#pager-position")).to_have_text("Page 2 of 2")
    expect(titles(page)).to_have_text([chairs[20], chairs[21], f"{word} mirror"])
    expect(page.locator("#pager-next")).to_have_attribute("aria-disabled", "true")

    page.reload()
    expect(page.locator("#pager-position")).to_have_text("Page 2 of 2")
    expect(titles(page)).to_have_text([chairs[20], chairs[21], f"{word} mirror"])
    expect(page.get_by_label("Search")).to_have_value(word)
    expect(page.get_by_label("Status")).to_have_value("open")

    page.go_back()
    expect(page).to_have_url(re.compile(rf"/\?search={word}&status=open$"))
    expect(page.locator("#pager-position")).to_have_text("Page 1 of 2")
    expect(titles(page)).to_have_text(chairs[:20])

    page.get_by_label("Sort by").select_option(label="Price: high to low")
    expect(page).to_have_url(re.compile(r"&ordering=-price$"))
    expect(titles(page)).to_have_text([f"{word} mirror", *reversed(chairs[3:])])

    page.get_by_label("Status").select_option(label="Upcoming")
    expect(page.locator("#results-heading")).to_have_text(f"1 lot matching “{word}”")
    expect(titles(page)).to_have_text([f"{word} desk"])
    expect(page.locator("#pager")).to_be_hidden()

    page.get_by_label("Status").select_option(label="Any")
    page.get_by_label("Sale").select_option(label=f"Sale {slug}")
    expect(page).to_have_url(re.compile(rf"[?&]auction={slug}(&|$)"))
    expect(titles(page)).to_have_text([f"{word} mirror"])
    # Whatever is shown updates live: not re-read (the reads are blocked), the sale's socket brings the bid.
    card = page.locator(f".card[data-lot-id='{mirror['id']}']")
    expect(page.locator("#connection")).to_have_text("Live")
    page.route(LIST_READS, lambda route: route.abort())
    api.bid(bidder, mirror["id"], "50.00")
    expect(card.locator(".card-price-line")).to_have_text("$50.00 · 1 bid")
    page.unroute(LIST_READS)

    page.get_by_label("Search").fill("no-such-thing")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results-empty-text")).to_have_text(f"No lots match “no-such-thing”, in Sale {slug}.")
    expect(page.locator("#lots-results .card")).to_have_count(0)
    page.get_by_role("button", name="Clear the search and filters").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#overview")).to_be_visible()
    expect(page.locator("#results")).to_be_hidden()
    expect(page.locator("#lots-open .card").first).to_be_visible()
    expect(page.get_by_label("Search")).to_have_value("")
    expect(page.get_by_label("Sale")).to_have_value("")

    page.go_back()
    expect(page.locator("#lots-results-empty")).to_be_visible()
    expect(page.get_by_label("Search")).to_have_value("no-such-thing")


def test_a_shared_search_url_shows_the_same_lots_on_a_phone(api, open_page):
    seller = api.register("seller")
    word = f"teak{next(api.names)}"
    for n in range(3):
        api.create_lot(seller, title=f"{word} stool {n}", starting_price=f"{20 + n}.00", ends_in=LATE)

    page = open_page(f"/?search={word}&ordering=-price", viewport=PHONE)
    expect(page.locator("#results-heading")).to_have_text(f"3 lots matching “{word}”")
    expect(titles(page)).to_have_text([f"{word} stool 2", f"{word} stool 1", f"{word} stool 0"])
    expect(page.get_by_label("Sort by")).to_have_value("-price")
    expect(page.locator("#pager")).to_be_hidden()
    screenshot(page, "lots-phone")
