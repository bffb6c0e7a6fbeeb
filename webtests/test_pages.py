"""The pages around bidding: refusals, untrusted text, the phone layout, lists, sales and accounts."""

import re

import pytest
from playwright.sync_api import expect

from webtests.conftest import PASSWORD, PHONE, STAFF_USERNAME, place_bid, png, screenshot

pytestmark = pytest.mark.browser

# The list page's own reads of its three lists (static/js/pages/list.js).
LIST_READS = re.compile(r"/api/lots/\?status=")

HOSTILE_TITLE = '<img src=x onerror="document.body.dataset.injected=1">Lamp & "shade"'


def test_refusals_read_clearly_and_user_text_is_never_html_on_a_phone(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(
        seller,
        title=HOSTILE_TITLE,
        description="<b>not bold</b>\nSecond line",
        starting_price="20.00",
        reserve_price="30.00",
        buy_now_price="50.00",
    )
    page = open_page(f"/lots/{lot['id']}/", user=alice, viewport=PHONE)
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#lot-title")).to_have_text(HOSTILE_TITLE)
    expect(page.locator("#lot-description")).to_have_text("<b>not bold</b>\nSecond line")
    assert page.locator("img[src='x'], #lot-description b").count() == 0
    assert page.evaluate("document.body.dataset.injected") is None
    expect(page.locator("#lot-reserve")).to_have_text("Reserve not met")

    place_bid(page, "12,50")
    expect(page.locator("#amount-error")).to_have_text("Enter an amount like 1,234.50.")
    expect(page.get_by_label("Your bid")).to_have_attribute("aria-invalid", "true")

    place_bid(page, "5.00")
    expect(page.locator("#bid-message")).to_have_text("Your bid is too low: the minimum bid is now $20.00.")
    expect(page.get_by_label("Your bid")).to_have_value("20.00")

    place_bid(page, "20.00", maximum="25.00")
    expect(page.locator("#bid-message")).to_have_text(
        "You're the highest bidder at $20.00, with a secret maximum of $25.00."
    )
    place_bid(page, "20.50", maximum="24.00")
    expect(page.locator("#bid-message")).to_have_text(
        "You're already the highest bidder. To bid more, enter a higher maximum bid."
    )
    expect(page.locator("#lot-reserve")).to_have_text("Reserve not met")

    # The access cookie is gone (expired): the API client refreshes the session and retries.
    page.context.clear_cookies(name="access_token")
    page.get_by_role("button", name="Watch this lot").click()
    expect(page.locator("#watch-toggle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#watch-toggle")).to_have_text("Watching ✓")
    assert "access_token" in {cookie["name"] for cookie in page.context.cookies()}
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "lot-phone")

    seller_page = open_page(f"/lots/{lot['id']}/", user=seller)
    expect(seller_page.locator("#lot-watchers")).to_have_text("2")
    # The seller is told before trying, and offered no form.
    expect(seller_page.locator("#bid-barred")).to_have_text("You can't bid on your own lot.")
    expect(seller_page.locator("#bid-form")).to_be_hidden()
    staff_page = open_page(f"/lots/{lot['id']}/", user=STAFF_USERNAME)
    expect(staff_page.locator("#bid-barred")).to_have_text("Staff accounts can't bid.")
    expect(staff_page.locator("#bid-form")).to_be_hidden()

    page.get_by_role("button", name=re.compile(r"^Buy now for \$50\.00$")).click()
    page.get_by_role("button", name="Yes, buy it").click()
    expect(page.locator("#lot-result")).to_have_text("You won this lot for $50.00.")
    expect(seller_page.locator("#lot-result")).to_have_text(f"Sold to {alice} for $50.00.")

    page.goto("/me/")
    expect(page.locator("#my-watchlist")).to_contain_text(HOSTILE_TITLE)
    expect(page.locator("#my-won")).to_contain_text(HOSTILE_TITLE)


def test_register_then_watch_prices_move_on_the_list_and_sale_pages(api, open_page):
    page = open_page("/register/", viewport=PHONE)
    username = f"dana{next(api.names)}"
    page.get_by_label("Username").fill(username)
    page.get_by_label("E-mail").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill("12345678")
    page.get_by_label("Repeat the password").fill("12345678")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#password-error")).to_contain_text("too common")
    expect(page.get_by_label("Password", exact=True)).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("[data-username]")).to_have_text(username)
    expect(page).to_have_url(re.compile(r"/$"))

    seller, bob = api.register("seller"), api.register("bob")
    slug = f"autumn-sale-{next(api.names)}"
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data={"title": "Autumn sale", "slug": slug})
    in_sale = api.create_lot(STAFF_USERNAME, auction=slug, title="Brass candlesticks", starting_price="15.00")
    api.create_lot(seller, title="Oak bookcase", starting_price="80.00", starts_in=300, ends_in=3600)
    sold = api.create_lot(seller, title="Tin toy robot", starting_price="5.00", buy_now_price="9.00")
    api.call("POST", f"/api/lots/{sold['id']}/buy-now/", user=bob)

    page.goto("/")
    card = page.locator(f".card[data-lot-id='{in_sale['id']}']")
    expect(card).to_contain_text("Ends in")
    expect(page.locator("#lots-upcoming")).to_contain_text("Oak bookcase")
    expect(page.locator("#lots-upcoming")).to_contain_text("Starts in")
    expect(page.locator("#lots-ended")).to_contain_text("Sold to Bidder 1 for $9.00.")
    expect(page.locator("#connection")).to_have_text("Live")
    # The lists are not re-read meanwhile (they would be every 15 s): only the sale's socket can bring it.
    page.route(LIST_READS, lambda route: route.abort())
    api.bid(bob, in_sale["id"], "15.00")
    expect(card.locator(".card-price-line")).to_have_text("$15.00 · 1 bid")
    page.unroute(LIST_READS)
    screenshot(page, "list-phone")

    page.goto(f"/auctions/{slug}/")
    expect(page.locator("#sale-title")).to_have_text("Autumn sale")
    expect(page.locator("#connection")).to_have_text("Live")
    api.bid(username, in_sale["id"], "15.50")
    expect(page.locator(f".card[data-lot-id='{in_sale['id']}'] .card-price")).to_have_text("$15.50")
    screenshot(page, "sale-phone")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    page.goto("/me/")
    expect(page).to_have_url(re.compile(r"/login/\?next=%2Fme%2F$"))


def test_a_lot_photo_shows_on_its_page_and_card(api, open_page):
    seller = api.register("seller")
    lot = api.create_lot(seller, title="Enamel vase", image=png())
    page = open_page(f"/lots/{lot['id']}/")
    photo = page.get_by_role("img", name="Enamel vase")
    expect(photo).to_have_js_property("naturalWidth", 400)  # it loaded
    # The room's LOT_STATUS carries the photo too: the socket must come up.
    expect(page.locator("#connection")).to_have_text("Live")
    screenshot(page, "lot-desktop-photo")
    page.goto("/")
    card_photo = page.locator(f".card[data-lot-id='{lot['id']}'] img")
    card_photo.scroll_into_view_if_needed()  # cards load their photos lazily
    expect(card_photo).to_have_js_property("naturalWidth", 400)
