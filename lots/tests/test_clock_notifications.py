"""Notifications: stored with the change, pushed to the user's socket and e-mailed, each exactly once.

OUTBID goes to the bidder who lost the lead, WON to the winner, LOT_SOLD or
LOT_UNSOLD to the seller, ENDING_SOON to watchers. The mailer, a worker of its
own beside the clock, sends the e-mails at least once: a failed send is
retried, never marked sent. A user with `email_notifications` off gets none,
but still the socket frame and the stored notification.
"""

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core import mail
from django.core.mail.backends import locmem
from django.db import connection

from lots.clock import run_due_work
from lots.mailer import send_due_emails
from lots.models import EmailState, Lot, LotStatus, Notification
from lots.pricing import money_text
from lots.services import finish_lot, scheduling, watch_lot
from testsupport.bidding import bid
from testsupport.clocks import in_seconds, running_clock, wait_for_status, wait_until
from testsupport.ws import Sockets

LEAD = 60


@pytest.fixture
def watcher(make_user):
    return make_user("walter")


def stored(lot=None) -> list[tuple[str, str]]:
    """(type, username) of the stored notifications, oldest first."""
    rows = Notification.objects.select_related("user").order_by("id")
    if lot is not None:
        rows = rows.filter(lot=lot)
    return [(n.type, n.user.username) for n in rows]


def mails() -> list[tuple[str, str]]:
    """(recipient, subject) of every e-mail sent, in order."""
    return [(m.to[0].split("@")[0], m.subject) for m in mail.outbox]


def a_sale_with_every_notification(make_lot, bidder, other_bidder, watcher):
    """A lot ending in a minute, watched, with alice outbid then back in the lead."""
    lot = make_lot(title="Clock", ends_at=in_seconds(60))
    watch_lot(lot_id=lot.pk, user=watcher)
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")  # alice is outbid
    bid(lot, bidder, "15.00")  # bob is outbid
    return lot


EXPECTED = [
    ("OUTBID", "alice"),
    ("OUTBID", "bob"),
    ("ENDING_SOON", "walter"),
    ("WON", "alice"),
    ("LOT_SOLD", "sam_seller"),
]


# --- E-mail ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_notification_is_stored_and_emailed_exactly_once(
    settings, make_lot, bidder, other_bidder, watcher, mailoutbox
):
    settings.AUCTION_ENDING_SOON_SECONDS = LEAD
    lot = a_sale_with_every_notification(make_lot, bidder, other_bidder, watcher)

    # Rounds of the clock and then the mailer before, inside and after the warning window, at and after the end.
    rounds = []
    for now in (
        lot.ends_at - timedelta(seconds=LEAD + 1),
        lot.ends_at - timedelta(seconds=10),
        lot.ends_at - timedelta(seconds=5),
        lot.ends_at,
        lot.ends_at + timedelta(seconds=1),
    ):
        tick = run_due_work(now=now)
        rounds.append((tick.warned, tick.closed, send_due_emails()))
    assert send_due_emails() == (0, 0)

    assert stored() == EXPECTED
    assert rounds == [(0, 0, (2, 0)), (1, 0, (1, 0)), (0, 0, (0, 0)), (0, 1, (2, 0)), (0, 0, (0, 0))]
    assert sorted(mails()) == [
        ("alice", "You have been outbid on Clock"),
        ("alice", "You won Clock"),
        ("bob", "You have been outbid on Clock"),
        ("sam_seller", "Sold: Clock"),
        ("walter", "Ending soon: Clock"),
    ]
    assert set(Notification.objects.values_list("email_state", flat=True)) == {EmailState.SENT}


@pytest.mark.django_db
def test_the_email_tells_what_happened_and_links_to_the_lot_and_the_settings(
    settings, make_lot, bidder, other_bidder, mailoutbox
):
    lot = make_lot(title="Clock", ends_at=in_seconds(60))
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")

    send_due_emails()

    (outbid,) = mailoutbox
    lot_url = f"{django_settings.FRONTEND_URL.rstrip('/')}/lots/{lot.pk}/"
    assert outbid.to == ["alice@example.com"]
    assert 'Someone outbid you on "Clock". The price is now USD 12.00' in outbid.body
    assert lot_url in outbid.body
    html, mimetype = outbid.alternatives[0]
    assert mimetype == "text/html" and f'href="{lot_url}"' in html
    # Where to turn them off: the account settings page.
    settings_url = f"{django_settings.FRONTEND_URL.rstrip('/')}/account/"
    assert f"You can turn these e-mails off in your account settings: {settings_url}" in outbid.body
    assert f'<a href="{settings_url}">account settings</a>' in html


@pytest.mark.django_db
def test_every_amount_in_an_email_carries_its_currency_in_the_currency_s_places(
    make_lot, bidder, other_bidder, mailoutbox
):
    lot = make_lot(title="Netsuke", currency="JPY", starting_price="1000", ends_at=in_seconds(60))
    bid(lot, bidder, "1000")
    bid(lot, other_bidder, "1200")
    send_due_emails()
    run_due_work(now=lot.ends_at)
    send_due_emails()

    texts = {m.subject: (m.body, m.alternatives[0][0]) for m in mailoutbox}
    expected = {
        "You have been outbid on Netsuke": "The price is now JPY 1,200; the next bid is at least JPY 1,225.",
        "You won Netsuke": "for JPY 1,200.",
        "Sold: Netsuke": "for JPY 1,200.",
    }
    assert set(texts) == set(expected)
    for subject, sentence in expected.items():
        body, html = texts[subject]
        assert sentence in body and sentence in html, subject


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [("1000.50", "USD", "USD 1,000.50"), ("5.00", "EUR", "EUR 5.00"), ("1200.00", "JPY", "JPY 1,200")],
)
def test_money_text_names_the_currency_and_takes_its_places(amount, currency, text):
    assert money_text(amount, currency) == text


@pytest.mark.django_db
def test_no_email_for_a_user_who_turned_them_off(make_lot, bidder, other_bidder, seller, mailoutbox):
    bidder.email_notifications = False
    bidder.save(update_fields=["email_notifications"])
    lot = make_lot(ends_at=in_seconds(60))
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")
    bid(lot, bidder, "15.00")

    run_due_work(now=lot.ends_at)
    send_due_emails()

    # alice was outbid and won: both stored, neither e-mailed.
    assert stored() == [("OUTBID", "alice"), ("OUTBID", "bob"), ("WON", "alice"), ("LOT_SOLD", "sam_seller")]
    assert sorted(mails()) == [("bob", "You have been outbid on Art deco lamp"), ("sam_seller", "Sold: Art deco lamp")]
    # ...and never later either.
    bidder.email_notifications = True
    bidder.save(update_fields=["email_notifications"])
    assert send_due_emails() == (0, 0)


@pytest.mark.django_db
def test_ending_soon_goes_to_each_watcher_once(settings, make_lot, make_user, bidder):
    settings.AUCTION_ENDING_SOON_SECONDS = LEAD
    lot = make_lot(ends_at=in_seconds(600), soft_close_seconds=120)
    unwatched = make_lot(ends_at=in_seconds(600))
    for name in ("walter", "wendy"):
        watch_lot(lot_id=lot.pk, user=make_user(name))
    make_user("nobody")

    run_due_work(now=lot.ends_at - timedelta(seconds=30))
    # A bid in the soft-close window moves the end: no second warning.
    bid(lot, bidder, "10.00", now=lot.ends_at - timedelta(seconds=20))
    run_due_work(now=lot.ends_at - timedelta(seconds=10))

    assert Counter(stored(lot)) == {("ENDING_SOON", "walter"): 1, ("ENDING_SOON", "wendy"): 1}
    assert stored(unwatched) == []
    assert Lot.objects.get(pk=unwatched.pk).ending_soon_sent_at is not None


@pytest.mark.django_db
def test_notifications_are_listed_newest_first(make_lot, bidder, other_bidder, client_for):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")
    run_due_work(now=lot.ends_at)

    alice = client_for(bidder).get("/api/users/me/notifications/").json()["results"]
    bob = client_for(other_bidder).get("/api/users/me/notifications/").json()["results"]

    assert [n["type"] for n in alice] == ["OUTBID"]
    assert [n["type"] for n in bob] == ["WON"]
    assert (bob[0]["lot"], bob[0]["payload"]["final_price"]) == (lot.pk, "12.00")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_mailers_of_many_clocks_send_each_email_once(make_lot, make_user, seller, mailoutbox):
    lots = [make_lot(title=f"Lot {i}") for i in range(12)]
    users = [make_user(f"racer{i}") for i in range(6)]
    for lot in lots:
        for n, user in enumerate(users):
            bid(lot, user, f"{10 + n}.00")  # five OUTBID per lot
    connection.close()
    barrier = threading.Barrier(6)

    def one_mailer(_):
        try:
            barrier.wait()
            return send_due_emails(limit=5)[0]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        sent = list(pool.map(one_mailer, range(6)))

    assert sum(sent) == len(mailoutbox) == Notification.objects.count() == 60
    assert sum(1 for n in sent if n) > 1, f"one mailer sent everything: {sent}"
    assert Counter(m.to[0] for m in mailoutbox) == {f"racer{i}@example.com": 12 for i in range(5)}


# --- Sockets -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_each_notification_reaches_its_users_socket_once_and_mail_respects_the_choice(
    settings, make_lot, bidder, other_bidder, seller, mailoutbox
):
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    other_bidder.email_notifications = False
    await database_sync_to_async(other_bidder.save)(update_fields=["email_notifications"])
    users = {"alice": bidder, "bob": other_bidder, "sam_seller": seller}
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(1.5))
    async with running_clock(), Sockets() as ws:
        sockets = {name: await ws.open("/ws/notifications/", user=user) for name, user in users.items()}
        for user, amount in ((bidder, "10.00"), (other_bidder, "12.00"), (bidder, "15.00")):
            await database_sync_to_async(bid)(lot, user, amount)
        await wait_for_status(lot.pk, LotStatus.CLOSED)
        rows = await database_sync_to_async(lambda: list(Notification.objects.order_by("id").select_related("user")))()
        expected = {name: [(n.type, n.id) for n in rows if n.user.username == name] for name in users}
        # Each socket gets its own notifications, and nothing more comes after them.
        received = {name: await socket.frames(len(expected[name])) for name, socket in sockets.items()}
        # E-mail comes from the mailer's thread, at its own pace.
        await wait_until(lambda: len(mail.outbox) >= 3, what="three e-mails")

    for name in users:
        assert [(f["type"], f["id"]) for f in received[name]] == expected[name], name
    assert [f["type"] for f in received["alice"]] == ["OUTBID", "WON"]
    assert [f["type"] for f in received["bob"]] == ["OUTBID"]
    assert [f["type"] for f in received["sam_seller"]] == ["LOT_SOLD"]
    assert (received["alice"][1]["final_price"], received["sam_seller"][0]["winner"]) == ("15.00", "alice")
    # bob turned e-mail off: his socket got the frame, his inbox nothing.
    assert sorted(mails()) == [
        ("alice", "You have been outbid on Art deco lamp"),
        ("alice", "You won Art deco lamp"),
        ("sam_seller", "Sold: Art deco lamp"),
    ]


class BlockedMailServer(locmem.EmailBackend):
    """A mail server that hangs until `released` is set."""

    entered = threading.Event()
    released = threading.Event()

    def send_messages(self, messages):
        self.entered.set()
        self.released.wait(60)
        return super().send_messages(messages)


class DownMailServer(locmem.EmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError(111, "Connection refused")


def unsent_notifications(user, lot, count: int) -> None:
    Notification.objects.bulk_create(
        Notification(user=user, lot=lot, type="OUTBID", payload={"lot_id": lot.pk, "title": lot.title})
        for _ in range(count)
    )


@pytest.mark.django_db(transaction=True)
async def test_a_hung_mail_server_never_holds_back_a_close(settings, make_lot, bidder, mailoutbox):
    settings.EMAIL_BACKEND = f"{__name__}.BlockedMailServer"
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    BlockedMailServer.entered.clear()
    BlockedMailServer.released.clear()
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    await database_sync_to_async(unsent_notifications)(bidder, lot, 20)

    try:
        async with running_clock():
            await asyncio.to_thread(BlockedMailServer.entered.wait, 30)
            assert BlockedMailServer.entered.is_set(), "the mailer never tried to send"
            # The mail server hangs; a lot ending now closes all the same.
            ending = await database_sync_to_async(make_lot)(ends_at=in_seconds(0.5))
            await wait_for_status(ending.pk, LotStatus.CLOSED)
            BlockedMailServer.released.set()
            await wait_until(
                lambda: not Notification.objects.filter(email_state=EmailState.PENDING).exists(), what="all e-mailed"
            )
    finally:
        BlockedMailServer.released.set()

    # Every one of them e-mailed once all the same (and the seller told the lot went unsold).
    assert Counter(mails()) == {
        ("alice", "You have been outbid on Art deco lamp"): 20,
        ("sam_seller", "Not sold: Art deco lamp"): 1,
    }


@pytest.mark.django_db
def test_a_failed_send_is_retried_with_backoff_and_never_marked_sent(settings, make_lot, bidder, mailoutbox):
    lot = make_lot(ends_at=in_seconds(3600))
    unsent_notifications(bidder, lot, 1)
    settings.EMAIL_BACKEND = f"{__name__}.DownMailServer"
    start = lot.created_at

    # The server is down: nothing is marked sent, it is tried again later, and later still.
    assert send_due_emails(now=start) == (0, 1)
    row = Notification.objects.get()
    assert (row.email_state, row.email_attempts, row.emailed_at) == (EmailState.PENDING, 1, None)
    assert row.email_next_try_at - start == timedelta(seconds=30)
    assert "Connection refused" in row.email_error
    assert send_due_emails(now=start + timedelta(seconds=29)) == (0, 0)
    assert send_due_emails(now=start + timedelta(seconds=30)) == (0, 1)
    assert Notification.objects.get().email_next_try_at - start == timedelta(seconds=90)

    # Back up: it is sent once, at its next try.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert send_due_emails(now=start + timedelta(seconds=90)) == (1, 0)
    assert send_due_emails(now=start + timedelta(hours=2)) == (0, 0)
    assert len(mailoutbox) == 1
    row = Notification.objects.get()
    assert (row.email_state, row.email_attempts, row.email_error) == (EmailState.SENT, 3, "")


@pytest.mark.django_db
def test_at_the_first_failed_send_the_rest_of_the_batch_waits_uncounted(settings, make_lot, bidder, mailoutbox):
    lot = make_lot(ends_at=in_seconds(3600))
    unsent_notifications(bidder, lot, 4)
    settings.EMAIL_BACKEND = f"{__name__}.DownMailServer"
    start = lot.created_at

    assert send_due_emails(now=start) == (0, 1)

    first, *rest = Notification.objects.order_by("id")
    assert (first.email_attempts, first.email_next_try_at - start) == (1, timedelta(seconds=30))
    # Not tried: due again at once, no attempt counted.
    assert {(n.email_state, n.email_attempts, n.email_next_try_at) for n in rest} == {(EmailState.PENDING, 0, None)}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert send_due_emails(now=start + timedelta(seconds=1)) == (3, 0)
    assert len(mailoutbox) == 3


@pytest.mark.django_db
def test_a_mailer_whose_claim_ran_out_sends_nothing(make_lot, bidder, mailoutbox):
    from django.core.mail import get_connection

    from lots.mailer import LEASE, _claim_due, _send_one

    lot = make_lot(ends_at=in_seconds(3600))
    unsent_notifications(bidder, lot, 1)
    now = lot.created_at
    (slow,) = _claim_due(10, now)
    # The slow mailer's lease runs out; another claims the row and sends it.
    assert send_due_emails(now=now + LEASE) == (1, 0)

    assert _send_one(get_connection(), slow, now + LEASE) == "lost"
    assert len(mailoutbox) == 1
    assert Notification.objects.get().email_state == EmailState.SENT


@pytest.mark.django_db
def test_a_send_that_keeps_failing_is_given_up_with_its_error(settings, make_lot, bidder, caplog):
    settings.EMAIL_BACKEND = f"{__name__}.DownMailServer"
    settings.AUCTION_MAIL_MAX_ATTEMPTS = 3
    lot = make_lot(ends_at=in_seconds(3600))
    unsent_notifications(bidder, lot, 1)
    now = lot.created_at

    for _ in range(5):
        send_due_emails(now=now)
        now += timedelta(hours=1)

    failed = Notification.objects.get()
    assert (failed.email_state, failed.email_attempts, failed.emailed_at) == (EmailState.FAILED, 3, None)
    assert "Connection refused" in failed.email_error
    assert [r.levelname for r in caplog.records if "given up" in r.getMessage()] == ["ERROR"]


@pytest.mark.django_db
def test_a_mailer_that_died_mid_send_leaves_the_email_to_be_retried(make_lot, bidder, mailoutbox):
    from lots.mailer import LEASE, _claim_due

    lot = make_lot(ends_at=in_seconds(3600))
    unsent_notifications(bidder, lot, 1)
    now = lot.created_at
    # A mailer claims it, then dies before sending.
    assert len(_claim_due(10, now)) == 1

    assert send_due_emails(now=now + LEASE - timedelta(seconds=1)) == (0, 0)
    assert send_due_emails(now=now + LEASE) == (1, 0)
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_busy_clock_never_holds_back_the_sockets_of_its_process(make_lot, bidder):
    """In `manage.py serve` the clock shares the process with every socket, never their thread.

    On PostgreSQL a bidder's socket opens and bids; SQLite has one writer at a
    time (and a token is a write), so there a watcher's socket opens, reads
    the lot and answers a PING.
    """
    on_postgresql = connection.vendor == "postgresql"
    await database_sync_to_async(make_lot)(ends_at=in_seconds(0.2))
    other = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    inside, release = threading.Event(), threading.Event()

    def a_long_close(**kwargs):
        inside.set()
        release.wait(60)
        finish_lot(**kwargs)

    accepted = None
    with mock.patch.object(scheduling, "finish_lot", a_long_close):
        async with running_clock():
            await asyncio.to_thread(inside.wait, 30)
            try:
                # The clock is in the middle of a round: a bidder still gets answers.
                async with Sockets() as ws:
                    socket = await ws.open(f"/ws/lots/{other.pk}/", user=bidder if on_postgresql else None)
                    status = await socket.wait_for("LOT_STATUS")
                    await socket.send({"type": "PING"})
                    await socket.wait_for("PONG")
                    if on_postgresql:
                        await socket.send({"type": "NEW_BID", "amount": "10.00", "request_id": "r1"})
                        accepted = await socket.wait_for("BID_ACCEPTED")
                still_closing = not release.is_set()
            finally:
                release.set()

    assert still_closing
    assert status["lot"]["id"] == other.pk
    if on_postgresql:
        assert (accepted["request_id"], accepted["leading"]) == ("r1", True)
