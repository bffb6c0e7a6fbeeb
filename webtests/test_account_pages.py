"""The account pages: a forgotten password, the settings, the notifications, and a visitor's quiet page loads."""

import email
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from webtests.conftest import PASSWORD, PHONE, screenshot

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a-fresh-and-long-passphrase"
RESET_LINK = re.compile(r"https?://\S+/reset-password/\?uid=[\w-]+&token=[\w-]+")


def mails_to(mail_dir: Path, address: str) -> list[str]:
    """The plain-text bodies of the e-mails the server sent to `address`, oldest first."""
    bodies = []
    for path in sorted(mail_dir.glob("*.log"), key=lambda path: path.stat().st_mtime_ns):
        for raw in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            message = email.message_from_bytes(raw.strip())
            if message["To"] == address:
                part = next(part for part in message.walk() if part.get_content_type() == "text/plain")
                bodies.append(part.get_payload(decode=True).decode())
    return bodies


def log_in_on_the_page(page: Page, username: str, password: str, *, name: str | None = None) -> None:
    """Log in with the form as `name` (the username or e-mail address; default: `username`)."""
    page.goto("/login/")
    page.get_by_label("Username or e-mail").fill(name or username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-username]")).to_have_text(username)


def test_a_visitor_page_load_asks_nothing_that_fails(api, open_page):
    seller = api.register("seller")
    slug = f"quiet-sale-{next(api.names)}"
    api.call("POST", "/api/auctions/", user="staff", data={"title": "Quiet sale", "slug": slug})
    lot = api.create_lot(seller, title="Carriage clock")
    live_pages = ["/", f"/lots/{lot['id']}/", f"/auctions/{slug}/"]
    # The pages for the logged in send a visitor to the log-in page.
    pages = [
        *live_pages,
        "/login/",
        "/register/",
        "/forgot-password/",
        "/me/",
        "/selling/",
        "/account/",
        "/notifications/",
    ]

    for path in pages:
        page = open_page(None)
        failures, console_errors = [], []
        page.on("response", lambda response, failures=failures: response.status >= 400 and failures.append(response))
        page.on("console", lambda message, errors=console_errors: message.type == "error" and errors.append(message))
        page.goto(path)
        expect(page.locator(".nav a[data-login-link]")).to_be_visible()
        if path in live_pages:
            expect(page.locator("#connection")).to_have_text("Live")
        assert [(response.status, response.url) for response in failures] == [], path
        assert [message.text for message in console_errors] == [], path


def test_a_session_is_still_refreshed_and_a_log_out_makes_pages_quiet_again(api, open_page):
    alice = api.register("alice")
    page = open_page(None, user=alice)
    # The access cookie expired (the browser dropped it): the page refreshes the session silently.
    page.context.clear_cookies(name="access_token")
    page.goto("/account/")
    expect(page.locator("[data-username]")).to_have_text(alice)
    expect(page).to_have_url(re.compile(r"/account/$"))

    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".nav a[data-login-link]")).to_be_visible()
    assert "signed_in" not in {cookie["name"] for cookie in page.context.cookies()}
    asked = []
    page.on("request", lambda request: "/api/users/me/" in request.url and asked.append(request.url))
    page.reload()
    expect(page.locator(".nav a[data-login-link]")).to_be_visible()
    assert asked == []


def test_a_forgotten_password_is_reset_from_the_emailed_link(api, open_page, auction_server):
    rita = api.register("rita")
    address = f"{rita}@example.com"
    page = open_page("/login/", viewport=PHONE)
    page.get_by_role("link", name="Forgot password?").click()
    expect(page).to_have_url(re.compile(r"/forgot-password/$"))
    # Loaded: the page's script has taken over the form (before, a click would post it natively).
    page.wait_for_load_state()

    page.get_by_label("E-mail", exact=True).fill("rita-at-example.com")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.locator("#email-error")).to_have_text("Enter a valid email address.")
    expect(page.get_by_label("E-mail", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("E-mail", exact=True).fill(address)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    expect(page.locator("#sent-email")).to_have_text(address)
    screenshot(page, "forgot-password-phone")
    (mail,) = mails_to(auction_server.mail_dir, address)
    link = urlsplit(RESET_LINK.search(mail)[0])
    reset_path = f"{link.path}?{link.query}"

    # An address without an account gets the same answer, and no e-mail.
    page.goto("/forgot-password/")
    page.get_by_label("E-mail", exact=True).fill("nobody-here@example.com")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    assert mails_to(auction_server.mail_dir, "nobody-here@example.com") == []

    page.goto(reset_path)
    page.get_by_label("New password", exact=True).fill("12345678")
    page.get_by_label("Repeat the new password").fill("12345678")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.locator("#new_password-error")).to_contain_text("too common")
    expect(page.get_by_label("New password", exact=True)).to_have_attribute("aria-invalid", "true")
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + "!")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.locator("#new_password_confirm-error")).to_have_text("The two passwords do not match.")
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("heading", name="Your password has been changed")).to_be_visible()

    page.get_by_role("link", name="Log in with the new password").click()
    expect(page).to_have_url(re.compile(r"/login/$"))
    log_in_on_the_page(page, rita, NEW_PASSWORD)

    # The link works once.
    used = open_page(reset_path)
    used.get_by_label("New password", exact=True).fill("another-long-passphrase")
    used.get_by_label("Repeat the new password").fill("another-long-passphrase")
    used.get_by_role("button", name="Set the new password").click()
    expect(used.locator("#reset-form .message")).to_have_text(
        "This link is invalid, has expired or was used already: ask for a new one below."
    )


def test_account_settings_turn_e_mails_off_and_change_the_address_and_the_password(api, open_page):
    sam = api.register("sam")
    other = api.register("other")
    elsewhere = open_page("/", user=sam)  # the same account on another device
    expect(elsewhere.locator("[data-username]")).to_have_text(sam)
    page = open_page("/", user=sam)
    page.get_by_role("link", name="Account").click()
    expect(page).to_have_url(re.compile(r"/account/$"))

    notifications = page.get_by_label("E-mail me my notifications")
    expect(notifications).to_be_checked()
    expect(notifications).to_be_enabled()
    notifications.uncheck()
    expect(page.locator("#notifications-form .message")).to_have_text("Saved: no more e-mails.")
    page.reload()
    expect(notifications).to_be_enabled()
    expect(notifications).not_to_be_checked()

    address = page.get_by_label("E-mail", exact=True)
    expect(address).to_have_value(f"{sam}@example.com")
    # A new address needs the current password.
    address_password = page.locator("#email-form").get_by_label("Current password")
    address.fill(f"{sam}.new@example.com")
    page.get_by_role("button", name="Change e-mail").click()
    expect(page.locator("#email_current_password-error")).to_have_text("Enter your current password.")
    address_password.fill("not-my-password")
    page.get_by_role("button", name="Change e-mail").click()
    expect(page.locator("#email_current_password-error")).to_have_text("Your current password is not right.")
    address_password.fill(PASSWORD)
    address.fill("sam-at-example")
    page.get_by_role("button", name="Change e-mail").click()
    expect(page.locator("#email-error")).to_have_text("Enter a valid email address.")
    address.fill(f"{other}@EXAMPLE.com")
    page.get_by_role("button", name="Change e-mail").click()
    expect(page.locator("#email-error")).to_have_text("An account with this e-mail address already exists.")
    address.fill(f"{sam}.new@example.com")
    address_password.fill(PASSWORD)
    page.get_by_role("button", name="Change e-mail").click()
    expect(page.locator("#email-form .message")).to_have_text(f"Your e-mail address is now {sam}.new@example.com.")
    expect(address).not_to_have_attribute("aria-invalid", "true")

    current, new = (
        page.locator("#password-form").get_by_label("Current password"),
        page.get_by_label("New password", exact=True),
    )
    repeat = page.get_by_label("Repeat the new password")
    current.fill("not-my-password")
    new.fill(NEW_PASSWORD)
    repeat.fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#current_password-error")).to_have_text("Your current password is not right.")
    expect(current).to_have_attribute("aria-invalid", "true")
    current.fill(PASSWORD)
    new.fill(sam)
    repeat.fill(sam)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#new_password-error")).to_contain_text("too similar")
    new.fill(NEW_PASSWORD)
    repeat.fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-form .message")).to_have_text(
        "Your password has been changed. Your other devices have been logged out."
    )
    expect(current).to_have_value("")
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header would cover the top of the full-page shot
    screenshot(page, "account-desktop")

    # This page stays logged in; the other device does not.
    page.reload()
    expect(page.locator("[data-username]")).to_have_text(sam)
    expect(address).to_have_value(f"{sam}.new@example.com")
    elsewhere.goto("/account/")
    expect(elsewhere).to_have_url(re.compile(r"/login/\?next=%2Faccount%2F$"))
    log_in_on_the_page(open_page(None), sam, NEW_PASSWORD, name=f"{sam}.new@example.com")


def test_the_notifications_page_lists_the_newest_first_a_page_at_a_time(api, open_page):
    seller, alice, bob = api.register("seller"), api.register("alice"), api.register("bob")
    lot = api.create_lot(seller, title="Pewter jug", starting_price="10.00")
    empty = open_page("/notifications/", user=alice)
    expect(empty.locator("#notifications-empty")).to_be_visible()

    api.bid(alice, lot["id"], "10.00")
    # Bob's proxy answers each of Alice's bids: every one of them ends in an OUTBID for her.
    api.call("POST", f"/api/lots/{lot['id']}/bids/", user=bob, data={"amount": "12.00", "max_amount": "900.00"})
    for amount in range(15, 15 + 5 * 20, 5):
        api.bid(alice, lot["id"], f"{amount}.00")

    latest_price = api.call("GET", f"/api/lots/{lot['id']}/")["current_price"]

    page = open_page("/", user=alice)
    page.get_by_role("link", name="Notifications").click()
    items = page.locator("#notification-list > li")
    expect(items).to_have_count(20)
    # Amounts carry their currency, as in the live notices.
    expect(items.first).to_contain_text(f"You've been outbid on “Pewter jug”. The price is now ${latest_price}.")
    page.get_by_role("button", name="Show older").click()
    expect(items).to_have_count(21)
    expect(items.last).to_contain_text("You've been outbid on “Pewter jug”. The price is now $12.00.")
    expect(page.get_by_role("button", name="Show older")).to_be_hidden()
    screenshot(page, "notifications-desktop")

    items.first.get_by_role("link", name="View lot").click()
    expect(page).to_have_url(re.compile(rf"/lots/{lot['id']}/$"))
    expect(page.locator("#lot-title")).to_have_text("Pewter jug")
