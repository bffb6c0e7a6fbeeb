"""Two people bidding on one lot in real browsers, and a page that loses its socket."""

import json
import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from webtests.conftest import PASSWORD, STAFF_USERNAME, place_bid, screenshot

pytestmark = pytest.mark.browser

# Seconds until a lot ends or opens: the steps before it must fit, on a loaded machine too.
LOT_SECONDS = 30
UPCOMING_SECONDS = 15


def log_in_with_form(page: Page, username: str) -> None:
    page.goto("/login/?next=/")
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-username]")).to_have_text(username)


def test_two_bidders_see_each_other_live_and_the_lot_end_with_its_winner(api, open_page):
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    alice_page, bob_page = open_page(None), open_page(None)
    log_in_with_form(alice_page, alice)
    log_in_with_form(bob_page, bob)
    # Long enough for the bidding below to happen before the end on a loaded machine.
    lot = api.create_lot(seller, title="Art deco lamp", starting_price="10.00", ends_in=LOT_SECONDS)
    for page in (alice_page, bob_page):
        page.goto(f"/lots/{lot['id']}/")
        expect(page.locator("#connection")).to_have_text("Live")
    expect(alice_page.locator("#lot-watchers")).to_have_text("2")

    place_bid(alice_page, "10.00")
    expect(alice_page.locator("#bid-message")).to_have_text("Your bid of $10.00 is the highest.")
    expect(bob_page.locator("#lot-price")).to_have_text("$10.00")
    # Bidders appear by their alias on the lot, never by username.
    expect(bob_page.locator("#bid-history li").first).to_contain_text("Bidder 1")
    expect(bob_page.locator("#bid-history")).not_to_contain_text(alice)
    expect(bob_page.get_by_label("Your bid")).to_have_value("10.50")

    place_bid(bob_page, "10.50")
    expect(alice_page.locator("#lot-price")).to_have_text("$10.50")
    expect(alice_page.locator("#bid-history li").first).to_contain_text("Bidder 2")
    expect(alice_page.locator("#bid-history li").nth(1)).to_contain_text("Bidder 1 (you)")
    expect(alice_page.locator("#lot-leader")).to_have_text("Highest bidder: Bidder 2")
    expect(alice_page.locator("#notices")).to_contain_text("You've been outbid on “Art deco lamp”")
    # The newest state wins: the green "highest" message gives way to the outbid one.
    expect(alice_page.locator("#bid-message")).to_have_text("You've been outbid: the price is now $10.50.")
    expect(alice_page.locator("#bid-message")).to_have_attribute("data-kind", "warning")

    place_bid(alice_page, "11.00")
    expect(alice_page.locator("#bid-message")).to_have_text("Your bid of $11.00 is the highest.")
    # Leading again, the outbid notice about this lot goes.
    expect(alice_page.locator('#notices .notice[data-kind="outbid"]')).to_have_count(0)
    expect(bob_page.locator("#lot-price")).to_have_text("$11.00")
    expect(bob_page.locator("#notices")).to_contain_text(
        "You've been outbid on “Art deco lamp”. The price is now $11.00."
    )
    expect(alice_page.locator("#lot-leader")).to_have_text("You're the highest bidder")
    expect(alice_page.locator("#bid-history li")).to_have_count(3)
    screenshot(alice_page, "lot-desktop-bidding")

    # The countdown runs out on the server's clock, then the room announces the result.
    expect(bob_page.locator("#countdown")).to_have_text(re.compile(r"^[1-3]s$"), timeout=(LOT_SECONDS + 30) * 1000)
    expect(alice_page.locator("#lot-result")).to_have_text("You won this lot for $11.00.")
    expect(bob_page.locator("#lot-result")).to_have_text("Sold to Bidder 1 for $11.00.")
    for page in (alice_page, bob_page):
        expect(page.locator("#countdown-label")).to_have_text("Ended")
        expect(page.locator("#bid-form")).to_be_hidden()
        # Nothing left to watch on an ended lot.
        expect(page.locator("#lot-watching")).to_be_hidden()
        expect(page.locator("#watch-toggle")).to_be_hidden()
    expect(alice_page.locator("#notices")).to_contain_text("You won “Art deco lamp” for $11.00.")
    screenshot(bob_page, "lot-desktop-ended")

    alice_page.goto("/me/")
    expect(alice_page.locator("#my-won")).to_contain_text("Art deco lamp")
    # One row for the lot, however many bids; amounts carry their lot's currency.
    expect(alice_page.locator("#my-bids tbody tr")).to_have_count(1)
    expect(alice_page.locator("#my-bids tbody tr").first).to_contain_text("$11.00")
    expect(alice_page.locator("#my-bids .pill")).to_have_text("Won")
    screenshot(alice_page, "me-desktop")
    bob_page.goto("/me/")
    expect(bob_page.locator("#my-bids .pill")).to_have_text("Lost")


def test_an_upcoming_lot_opens_on_time_without_a_reload(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, title="Oak bookcase", starting_price="80.00", starts_in=UPCOMING_SECONDS)
    page = open_page(f"/lots/{lot['id']}/", user=alice)
    expect(page.locator("#countdown-label")).to_have_text("Starts in")
    expect(page.locator("#lot-status")).to_have_text("Upcoming")
    expect(page.get_by_role("button", name="Place bid")).to_be_disabled()
    expect(page.locator("#bid-message")).to_have_text("Bidding opens when the lot starts.")

    expect(page.get_by_role("button", name="Place bid")).to_be_enabled(timeout=(UPCOMING_SECONDS + 30) * 1000)
    expect(page.locator("#lot-status")).to_have_text("Open")
    expect(page.locator("#countdown-label")).to_have_text("Ends in")
    place_bid(page, "80.00")
    expect(page.locator("#bid-message")).to_have_text("Your bid of $80.00 is the highest.")


class SocketCutter:
    """Routes the page's lot sockets through Playwright, so the test can cut them like a network would."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.cut_off = False
        self.urls: list[str] = []
        self.frames: list[dict] = []
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        page.route_web_socket(re.compile(r"/ws/lots/"), self.handle)

    def handle(self, page_side: WebSocketRoute) -> None:
        self.urls.append(page_side.url)
        if self.cut_off:
            page_side.close(code=1011, reason="network down")
            return
        server_side = page_side.connect_to_server()
        server_side.on_message(lambda message: self.forward(page_side, message))
        self.routes.append((page_side, server_side))

    def forward(self, page_side: WebSocketRoute, message: str) -> None:
        self.frames.append(json.loads(message))
        page_side.send(message)

    def cut(self) -> None:
        self.cut_off = True
        self.page.context.set_offline(True)
        for page_side, server_side in self.routes:
            server_side.close()
            page_side.close(code=1011, reason="network down")
        self.routes.clear()
        self.frames.clear()

    def restore(self) -> None:
        self.cut_off = False
        self.page.context.set_offline(False)


def test_a_page_whose_socket_is_cut_reconnects_with_since_and_shows_the_missed_bid(api, open_page):
    seller, alice, bob, carol = (api.register(name) for name in ("seller", "alice", "bob", "carol"))
    lot = api.create_lot(seller, title="Walnut sideboard", starting_price="300.00")
    page = open_page(None, user=alice)
    cutter = SocketCutter(page)
    page.goto(f"/lots/{lot['id']}/")
    expect(page.locator("#connection")).to_have_text("Live")
    api.bid(bob, lot["id"], "300.00")
    expect(page.locator("#lot-price")).to_have_text("$300.00")
    page.evaluate("window.sameDocument = true")

    cutter.cut()
    expect(page.locator("#connection")).to_have_text(re.compile(r"^Reconnecting…"))
    api.bid(carol, lot["id"], "305.00")
    page.wait_for_timeout(500)
    expect(page.locator("#lot-price")).to_have_text("$300.00")  # really cut off

    cutter.restore()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#lot-price")).to_have_text("$305.00")
    expect(page.locator("#bid-history li").first).to_contain_text("Bidder 2")  # carol
    expect(page.locator("#bid-history li")).to_have_count(2)
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    assert re.search(r"\?ticket=[^&]+&since=1$", cutter.urls[-1]), cutter.urls
    # The missed event was replayed in order, not replaced by a fresh snapshot.
    assert cutter.frames[0]["type"] == "NEW_BID", cutter.frames
    assert cutter.frames[0]["seq"] == 2, cutter.frames
    assert cutter.frames[0]["bid"]["bidder"] == "Bidder 2", cutter.frames


def test_a_watcher_sees_the_price_fall_back_when_staff_void_a_bidder(api, open_page):
    alice, bob = api.register("alice"), api.register("bob")
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data={"title": "Winter sale", "slug": "winter-sale"})
    lot = api.create_lot(STAFF_USERNAME, auction="winter-sale", title="Pewter jug", starting_price="10.00")
    registrations = {}
    for bidder in (alice, bob):
        registrations[bidder] = api.call("POST", "/api/auctions/winter-sale/register/", user=bidder)
    api.bid(bob, lot["id"], "10.00")
    api.bid(alice, lot["id"], "15.00")
    page = open_page(f"/lots/{lot['id']}/", user=bob)
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#lot-price")).to_have_text("$15.00")
    expect(page.locator("#bid-history li")).to_have_count(2)

    voided = api.call(
        "POST",
        f"/api/auctions/winter-sale/participants/{registrations[alice]['id']}/void-bids/",
        user=STAFF_USERNAME,
    )

    assert voided == {"lots": [{"lot": lot["id"], "voided": 1}]}
    expect(page.locator("#lot-price")).to_have_text("$10.00")
    expect(page.locator("#bid-history li")).to_have_count(1)
    # Registered bidders appear by their paddle: alice registered first (1), bob second (2).
    expect(page.locator("#bid-history li").first).to_contain_text("Paddle 2 (you)")
    expect(page.locator("#lot-leader")).to_have_text("You're the highest bidder")
    expect(page.locator("#announcer")).to_have_text("Staff voided 1 bid(s) by Paddle 1; the price is now $10.00.")


def test_a_registration_decision_shows_on_the_open_lot_page(api, open_page):
    bob = api.register("bob")
    sale = {"title": "Approved-only sale", "slug": "approved-only", "requires_registration": True}
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data=sale)
    lot = api.create_lot(STAFF_USERNAME, auction="approved-only", title="Silver tray", starting_price="10.00")
    registration = api.call("POST", "/api/auctions/approved-only/register/", user=bob)
    assert registration["status"] == "pending"
    page = open_page(f"/lots/{lot['id']}/", user=bob)
    expect(page.locator("#registration")).to_have_text("Your registration for this sale is awaiting approval.")

    api.call("POST", f"/api/auctions/approved-only/participants/{registration['id']}/approve/", user=STAFF_USERNAME)

    expect(page.locator("#registration")).to_have_text(
        f"You're registered to bid in this sale (paddle {registration['paddle_number']})."
    )
    expect(page.locator("#notices")).to_contain_text("Your registration for “Approved-only sale” is now approved.")
    place_bid(page, "10.00")
    expect(page.locator("#bid-message")).to_have_text("Your bid of $10.00 is the highest.")
