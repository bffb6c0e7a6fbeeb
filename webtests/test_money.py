"""Money as a person reads and types it: the lot's currency and places, the browser's locale.

The bid field takes an amount written as the page shows amounts ("40,50" in German, "$1,000.50" in
English) and sends the plain decimal string the API takes; what it cannot read is refused by the
field, saying how to type it.
"""

import pytest
from playwright.sync_api import expect

from webtests.conftest import place_bid

pytestmark = pytest.mark.browser

HOW_TO_EN = "Enter an amount like 1,234.50."
HOW_TO_DE = "Enter an amount like 1.234,50."

# (text typed, currency, places) -> what `parseAmount` makes of it, per browser locale.
PARSED = {
    "en-US": [
        (("1,000.50", "USD", 2), {"amount": "1000.50"}),
        (("$1,000.50", "USD", 2), {"amount": "1000.50"}),
        ((" $ 40.5 ", "USD", 2), {"amount": "40.5"}),
        (("USD 40", "USD", 2), {"amount": "40"}),
        (("40.50 USD", "USD", 2), {"amount": "40.50"}),
        (("0040.500", "USD", 2), {"amount": "40.50"}),
        (("1,234,567", "USD", 2), {"amount": "1234567"}),
        (("12,50", "USD", 2), {"problem": HOW_TO_EN}),
        (("1,0000", "USD", 2), {"problem": HOW_TO_EN}),
        (("1.000,50", "USD", 2), {"problem": HOW_TO_EN}),
        (("1 000", "USD", 2), {"problem": HOW_TO_EN}),
        (("€40", "USD", 2), {"problem": HOW_TO_EN}),
        (("40.", "USD", 2), {"problem": HOW_TO_EN}),
        ((".5", "USD", 2), {"problem": HOW_TO_EN}),
        (("-5", "USD", 2), {"problem": HOW_TO_EN}),
        (("1e3", "USD", 2), {"problem": HOW_TO_EN}),
        (("", "USD", 2), {"problem": HOW_TO_EN}),
        (("40.505", "USD", 2), {"problem": "USD takes at most 2 decimals, like 1,234.50."}),
        (("0.00", "USD", 2), {"problem": "Enter an amount above zero."}),
        (("12345678901", "USD", 2), {"problem": "That amount is too large."}),
        (("1,200", "JPY", 0), {"amount": "1200"}),
        (("1200", "JPY", 0), {"amount": "1200"}),
        (("¥1,200", "JPY", 0), {"amount": "1200"}),
        (("1200.00", "JPY", 0), {"amount": "1200"}),
        (("1200.5", "JPY", 0), {"problem": "JPY takes no decimals: enter a whole amount, like 1,200."}),
    ],
    "de-DE": [
        (("40,50", "EUR", 2), {"amount": "40.50"}),
        (("40,50 €", "EUR", 2), {"amount": "40.50"}),
        (("1.000,50", "EUR", 2), {"amount": "1000.50"}),
        (("1.000,50\u00a0€", "EUR", 2), {"amount": "1000.50"}),
        (("EUR 7", "EUR", 2), {"amount": "7"}),
        (("40.50", "EUR", 2), {"problem": HOW_TO_DE}),
        (("1,000.50", "EUR", 2), {"problem": HOW_TO_DE}),
        (("40,505", "EUR", 2), {"problem": "EUR takes at most 2 decimals, like 1.234,50."}),
        (("1.200", "JPY", 0), {"amount": "1200"}),
        (("1200,5", "JPY", 0), {"problem": "JPY takes no decimals: enter a whole amount, like 1.200."}),
    ],
}
# (amount, places) -> the bid field's text, per locale.
FOR_INPUT = {
    "en-US": [(("1000.00", 0), "1000"), (("10.50", 2), "10.50"), (("1234.50", 2), "1234.50")],
    "de-DE": [(("1000.00", 0), "1000"), (("10.50", 2), "10,50"), (("1234.50", 2), "1234,50")],
}


@pytest.mark.parametrize("locale", ["en-US", "de-DE"])
def test_typed_amounts_are_read_in_the_browser_s_locale(open_page, locale):
    page = open_page("/", locale=locale)
    parsed, for_input = page.evaluate(
        """async ([parsing, filling]) => {
            const { amountForInput, parseAmount } = await import("/static/js/format.js");
            return [parsing.map((args) => parseAmount(...args)), filling.map((args) => amountForInput(...args))];
        }""",
        [[args for args, _ in PARSED[locale]], [args for args, _ in FOR_INPUT[locale]]],
    )

    # Each outcome beside its input, so a failure names the text.
    assert list(zip([args for args, _ in PARSED[locale]], parsed, strict=True)) == PARSED[locale]
    assert for_input == [text for _, text in FOR_INPUT[locale]]


def test_a_yen_lot_takes_whole_amounts_as_the_page_shows_them(api, open_page):
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    lot = api.create_lot(seller, currency="JPY", starting_price="1000")
    page = open_page(f"/lots/{lot['id']}/", user=alice)
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#min-next-bid")).to_have_text("¥1,000")
    expect(page.get_by_label("Your bid")).to_have_value("1000")

    place_bid(page, "1200.5")
    expect(page.locator("#amount-error")).to_have_text("JPY takes no decimals: enter a whole amount, like 1,200.")
    expect(page.get_by_label("Your bid")).to_have_attribute("aria-invalid", "true")

    place_bid(page, "1,200")
    expect(page.locator("#bid-message")).to_have_text("Your bid of ¥1,200 is the highest.")
    expect(page.locator("#lot-price")).to_have_text("¥1,200")
    expect(page.locator("#amount-error")).to_have_text("")
    expect(page.get_by_label("Your bid")).not_to_have_attribute("aria-invalid", "true")
    # The next minimum, 1,200 + the table's 25, pre-filled without decimals.
    expect(page.locator("#min-next-bid")).to_have_text("¥1,225")
    expect(page.get_by_label("Your bid")).to_have_value("1225")

    bob_page = open_page(f"/lots/{lot['id']}/", user=bob)
    expect(bob_page.get_by_label("Your bid")).to_have_value("1225")
    place_bid(bob_page, "1300")
    expect(bob_page.locator("#bid-message")).to_have_text("Your bid of ¥1,300 is the highest.")
    expect(page.locator("#lot-price")).to_have_text("¥1,300")


def test_a_german_browser_bids_with_a_decimal_comma(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, currency="EUR", starting_price="40.00")
    page = open_page(f"/lots/{lot['id']}/", user=alice, locale="de-DE")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#lot-price")).to_have_text("40,00\u00a0€")
    expect(page.get_by_label("Your bid")).to_have_value("40,00")

    place_bid(page, "40.50")
    expect(page.locator("#amount-error")).to_have_text(HOW_TO_DE)

    place_bid(page, "40,50")
    expect(page.locator("#bid-message")).to_have_text("Your bid of 40,50\u00a0€ is the highest.")
    expect(page.locator("#lot-price")).to_have_text("40,50\u00a0€")
    assert api.call("GET", f"/api/lots/{lot['id']}/")["current_price"] == "40.50"


def test_an_english_browser_bids_with_the_symbol_and_thousands_separators(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller, currency="USD", starting_price="1000.00")
    page = open_page(f"/lots/{lot['id']}/", user=alice)
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.get_by_label("Your bid")).to_have_value("1000.00")

    place_bid(page, "$1,000.50", maximum="1.100,00")
    expect(page.locator("#max_amount-error")).to_have_text(f"{HOW_TO_EN} Or leave the maximum empty.")
    expect(page.get_by_label("Maximum bid")).to_have_attribute("aria-invalid", "true")

    place_bid(page, "$1,000.50", maximum="$900")
    expect(page.locator("#max_amount-error")).to_have_text("Your maximum must be at least your bid.")

    place_bid(page, "$1,000.50", maximum="$1,100")
    expect(page.locator("#bid-message")).to_have_text(
        "You're the highest bidder at $1,000.50, with a secret maximum of $1,100.00."
    )
    expect(page.locator("#lot-price")).to_have_text("$1,000.50")
    expect(page.locator("#max_amount-error")).to_have_text("")
