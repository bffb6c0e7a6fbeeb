"""The lot's chat on its page: live between pages, the seller's replies marked, hiding, refusals, visitors."""

import re

import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from webtests.conftest import STAFF_USERNAME, screenshot

pytestmark = pytest.mark.browser

LOT_ROOM = re.compile(r"/ws/lots/")


def send(page: Page, text: str) -> None:
    page.get_by_label("Your message").fill(text)
    page.get_by_role("button", name="Send").click()


def entry(page: Page, text: str) -> Locator:
    """The chat's entry whose message is exactly `text`."""
    return page.locator("#chat-list li").filter(has=page.locator(".chat-text").get_by_text(text, exact=True))


def post(api, lot: dict, user: str, text: str) -> dict:
    return api.call("POST", f"/api/lots/{lot['id']}/chat/", user=user, data={"text": text})


def test_messages_go_live_between_pages_the_sellers_reply_is_marked_and_a_hidden_one_goes(api, open_page):
    seller, alice, bob = (api.register(name) for name in ("seller", "alice", "bob"))
    lot = api.create_lot(seller, title="Art deco lamp")
    alice_page, bob_page, seller_page = (open_page(f"/lots/{lot['id']}/", user=user) for user in (alice, bob, seller))
    for page in (alice_page, bob_page, seller_page):
        expect(page.locator("#connection")).to_have_text("Live")

    question = "Is the shade <b>original</b>?"
    send(alice_page, question)
    expect(entry(bob_page, question)).to_contain_text(alice)
    # User text is shown as typed, never as HTML.
    expect(bob_page.locator("#chat-list b")).to_have_count(0)
    expect(entry(alice_page, question).locator(".chat-author")).to_have_text(f"{alice} (you)")
    expect(alice_page.get_by_label("Your message")).to_have_value("")

    answer = "Yes, the original 1930s shade."
    send(seller_page, answer)
    expect(entry(alice_page, answer).locator(".chat-seller")).to_have_text("Seller")
    expect(entry(alice_page, question).locator(".chat-seller")).to_have_count(0)
    expect(entry(alice_page, question).locator("time")).not_to_be_empty()
    # Bidders cannot hide; the seller can.
    expect(bob_page.get_by_role("button", name="Hide")).to_have_count(0)
    screenshot(alice_page, "lot-chat-desktop")

    spam = "Cheap lamps at spam.example!"
    send(bob_page, spam)
    entry(seller_page, spam).get_by_role("button", name="Hide").click()
    for page in (alice_page, bob_page, seller_page):
        expect(entry(page, spam)).to_have_count(0)
        expect(entry(page, question)).to_be_visible()
    expect(seller_page.locator("#chat-status")).to_be_empty()


def test_an_overlong_message_and_too_many_messages_read_clearly(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller)
    page = open_page(f"/lots/{lot['id']}/", user=alice)
    expect(page.locator("#connection")).to_have_text("Live")

    send(page, "x" * 501)
    expect(page.locator("#chat-status")).to_have_text("Your message is too long. A message has at most 500 characters.")
    expect(page.get_by_label("Your message")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Your message")).to_have_value("x" * 501)  # kept, to shorten

    send(page, "   ")
    expect(page.locator("#chat-status")).to_have_text("Write a message first.")

    for number in range(10):  # CHAT_MESSAGES_PER_MINUTE
        post(api, lot, alice, f"Message {number}")
    send(page, "One too many")
    expect(page.locator("#chat-status")).to_have_text("You're sending messages too fast. Wait a minute and try again.")
    expect(entry(page, "Message 9")).to_be_visible()
    expect(entry(page, "One too many")).to_have_count(0)


def open_without_socket(open_page, path: str, user: str) -> Page:
    """The page with every lot socket refused, as by a proxy that drops WebSockets."""
    page = open_page(None, user=user)
    page.route_web_socket(LOT_ROOM, lambda socket: socket.close(code=1011, reason="no websockets here"))
    page.goto(path)
    expect(page.locator("#connection")).to_have_text(re.compile(r"^Reconnecting…"))
    return page


def test_without_a_socket_the_page_sends_and_hides_over_rest(api, open_page):
    seller, alice, bob = (api.register(name) for name in ("seller", "alice", "bob"))
    lot = api.create_lot(seller)
    path = f"/lots/{lot['id']}/"
    bob_page = open_page(path, user=bob)
    expect(bob_page.locator("#connection")).to_have_text("Live")
    alice_page = open_without_socket(open_page, path, alice)

    send(alice_page, "Sent without a socket")
    expect(entry(alice_page, "Sent without a socket")).to_be_visible()
    expect(alice_page.get_by_label("Your message")).to_have_value("")
    expect(entry(bob_page, "Sent without a socket")).to_be_visible()
    send(alice_page, "y" * 501)
    expect(alice_page.locator("#chat-status")).to_have_text(
        "Your message is too long. A message has at most 500 characters."
    )

    # Staff hide like the seller.
    staff_page = open_without_socket(open_page, path, STAFF_USERNAME)
    entry(staff_page, "Sent without a socket").get_by_role("button", name="Hide").click()
    expect(entry(staff_page, "Sent without a socket")).to_have_count(0)
    expect(entry(bob_page, "Sent without a socket")).to_have_count(0)


def test_a_visitor_reads_the_chat_live_and_is_asked_to_log_in_to_write(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller)
    post(api, lot, alice, "Does it ship abroad?")
    post(api, lot, seller, "Within the EU.")

    page = open_page(f"/lots/{lot['id']}/")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#chat-list li")).to_have_count(2)
    expect(page.locator("#chat-list li").first).to_contain_text("Does it ship abroad?")  # oldest first
    expect(entry(page, "Within the EU.").locator(".chat-seller")).to_have_text("Seller")
    expect(page.get_by_role("button", name="Hide")).to_have_count(0)
    expect(page.locator("#chat-form")).to_be_hidden()
    login = page.locator("#chat-login").get_by_role("link", name="Log in")
    expect(login).to_have_attribute("href", f"/login/?next=%2Flots%2F{lot['id']}%2F")

    post(api, lot, alice, "Thanks!")
    expect(entry(page, "Thanks!")).to_be_visible()


def test_after_a_dropped_socket_the_chat_catches_up_with_what_was_said_and_hidden(api, open_page):
    seller, alice = api.register("seller"), api.register("alice")
    lot = api.create_lot(seller)
    spam = post(api, lot, alice, "Spam that the seller will hide")
    page = open_page(None)
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    cut_off = False

    def route(page_side: WebSocketRoute) -> None:
        if cut_off:
            page_side.close(code=1011, reason="network down")
            return
        routes.append((page_side, page_side.connect_to_server()))

    page.route_web_socket(LOT_ROOM, route)
    page.goto(f"/lots/{lot['id']}/")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(entry(page, spam["text"])).to_be_visible()

    cut_off = True
    for page_side, server_side in routes:
        server_side.close()
        page_side.close(code=1011, reason="network down")
    expect(page.locator("#connection")).to_have_text(re.compile(r"^Reconnecting…"))
    post(api, lot, alice, "Said while you were away")
    api.call("POST", f"/api/lots/{lot['id']}/chat/{spam['id']}/hide/", user=seller)
    page.wait_for_timeout(500)
    expect(entry(page, spam["text"])).to_be_visible()  # really cut off

    cut_off = False
    expect(entry(page, "Said while you were away")).to_be_visible()
    expect(entry(page, spam["text"])).to_have_count(0)
