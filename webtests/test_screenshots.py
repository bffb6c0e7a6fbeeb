"""A picture of every page at a desktop and a phone width (`make screenshots` writes them to docs/screenshots/).

The pages are the site's `page_urlpatterns`: a page added without a picture here fails this test, and
auction_site/tests/test_screenshots_docs.py fails until `make screenshots` has been run for it.
"""

import pytest
from playwright.sync_api import Page, expect

from auction_site.urls import page_urlpatterns
from webtests.conftest import DESKTOP, PHONE, STAFF_USERNAME, screenshot

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture(scope="module")
def sample(api) -> dict:
    """A sale with lots, bids from two people, and one of them outbid (a notification)."""
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    api.call("POST", "/api/auctions/", user=STAFF_USERNAME, data={"title": "Winter Clocks", "slug": "winter-clocks"})
    lots = [
        api.create_lot(STAFF_USERNAME, auction="winter-clocks", title=title, starting_price=price, ends_in=3600 * hours)
        for title, price, hours in (("Carriage clock", "120.00", 5), ("Brass barometer", "80.00", 30))
    ]
    lots.append(api.create_lot(seller, title="Art deco lamp", starting_price="40.00", ends_in=7200))
    api.create_lot(seller, title="Oak bookcase", starting_price="200.00", starts_in=86_400, ends_in=172_800)
    api.bid(alice, lots[0]["id"], "120.00")
    api.bid(bob, lots[0]["id"], "125.00")
    api.bid(alice, lots[2]["id"], "40.00")
    return {"alice": alice, "seller": seller, "lot": lots[0], "sale": "winter-clocks"}


# Each page: (its path, who looks at it).
def pages(sample: dict) -> dict[str, tuple[str, str | None]]:
    return {
        "page-lots": ("/", None),
        "page-lot": (f"/lots/{sample['lot']['id']}/", sample["alice"]),
        "page-sale": (f"/auctions/{sample['sale']}/", sample["alice"]),
        "page-me": ("/me/", sample["alice"]),
        "page-login": ("/login/", None),
        "page-register": ("/register/", None),
        "page-forgot-password": ("/forgot-password/", None),
        "page-reset-password": ("/reset-password/?uid=MQ&token=sample", None),
        "page-account": ("/account/", sample["alice"]),
        "page-notifications": ("/notifications/", sample["alice"]),
        "page-selling": ("/selling/", sample["seller"]),
    }


def settled(page: Page, user: str | None) -> None:
    """What is loading has loaded, and live pages are live: the picture shows the page as a person sees it."""
    page.wait_for_load_state("networkidle")
    expect(page.locator('[aria-busy="true"]:visible')).to_have_count(0)
    if user:
        expect(page.locator("[data-username]")).to_have_text(user)
    if page.locator("#connection").count():
        expect(page.locator("#connection")).to_have_text("Live")


def test_every_page_is_pictured_at_a_desktop_and_a_phone_width(sample, open_page):
    shown = pages(sample)
    assert set(shown) == {pattern.name for pattern in page_urlpatterns}, "a page without a picture"

    for name, (path, user) in shown.items():
        for width, viewport in WIDTHS.items():
            page = open_page(path, user=user, viewport=viewport)
            settled(page, user)
            screenshot(page, f"{name.removeprefix('page-')}-{width}")
            page.context.close()
