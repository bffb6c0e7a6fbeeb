"""Notifications: stored with the change, pushed to the user's socket and e-mailed, each exactly once.

OUTBID goes to the bidder who lost the lead, WON to the winner, LOT_SOLD or
LOT_UNSOLD to the seller, ENDING_SOON to watchers. The clock's mailer sends
the e-mails; a user with `email_notifications` off gets none, but still the
socket frame and the stored notification.
"""

import asyncio
import threading
import time
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

from bids.mailer import send_pending_emails
from bids.models import Notification
from bids.tests.utils import bid
from lots import services
from lots.clock import run_due_work
from lots.models import Lot, LotStatus
from lots.services import finish_lot, watch_lot
from lots.tests.clock_helpers import Socket, in_seconds, running_clock, wait_for_status, wait_until

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

    # Rounds of the clock before, inside and after the warning window, at and after the end.
    ticks = [
        run_due_work(now=lot.ends_at - timedelta(seconds=LEAD + 1)),
        run_due_work(now=lot.ends_at - timedelta(seconds=10)),
        run_due_work(now=lot.ends_at - timedelta(seconds=5)),
        run_due_work(now=lot.ends_at),
        run_due_work(now=lot.ends_at + timedelta(seconds=1)),
    ]
    assert send_pending_emails() == 0

    assert stored() == EXPECTED
    assert [(t.warned, t.closed, t.emailed) for t in ticks] == [(0, 0, 2), (1, 0, 1), (0, 0, 0), (0, 1, 2), (0, 0, 0)]
    assert sorted(mails()) == [
        ("alice", "You have been outbid on Clock"),
        ("alice", "You won Clock"),
        ("bob", "You have been outbid on Clock"),
        ("sam_seller", "Sold: Clock"),
        ("walter", "Ending soon: Clock"),
    ]
    assert not Notification.objects.filter(emailed_at__isnull=True).exists()


@pytest.mark.django_db
def test_the_email_tells_what_happened_and_links_to_the_lot(settings, make_lot, bidder, other_bidder, mailoutbox):
    lot = make_lot(title="Clock", ends_at=in_seconds(60))
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")

    send_pending_emails()

    (outbid,) = mailoutbox
    lot_url = f"{django_settings.FRONTEND_URL.rstrip('/')}/lots/{lot.pk}/"
    assert outbid.to == ["alice@example.com"]
    assert 'Someone outbid you on "Clock". The price is now 12.00' in outbid.body
    assert lot_url in outbid.body
    html, mimetype = outbid.alternatives[0]
    assert mimetype == "text/html" and f'href="{lot_url}"' in html


@pytest.mark.django_db
def test_no_email_for_a_user_who_turned_them_off(make_lot, bidder, other_bidder, seller, mailoutbox):
    bidder.email_notifications = False
    bidder.save(update_fields=["email_notifications"])
    lot = make_lot(ends_at=in_seconds(60))
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")
    bid(lot, bidder, "15.00")

    run_due_work(now=lot.ends_at)

    # alice was outbid and won: both stored, neither e-mailed.
    assert stored() == [("OUTBID", "alice"), ("OUTBID", "bob"), ("WON", "alice"), ("LOT_SOLD", "sam_seller")]
    assert sorted(mails()) == [("bob", "You have been outbid on Art deco lamp"), ("sam_seller", "Sold: Art deco lamp")]
    # ...and never later either.
    bidder.email_notifications = True
    bidder.save(update_fields=["email_notifications"])
    assert send_pending_emails() == 0


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
            return send_pending_emails(limit=5)
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
    async with running_clock():
        sockets = {name: await Socket.open("/ws/notifications/", user=user) for name, user in users.items()}
        try:
            for user, amount in ((bidder, "10.00"), (other_bidder, "12.00"), (bidder, "15.00")):
                await database_sync_to_async(bid)(lot, user, amount)
            await wait_for_status(lot.pk, LotStatus.CLOSED, timeout=3)
            rows = await database_sync_to_async(
                lambda: list(Notification.objects.order_by("id").select_related("user"))
            )()
            expected = {name: [(n.type, n.id) for n in rows if n.user.username == name] for name in users}
            # Each socket gets its own notifications, and nothing more comes after them.
            received = {name: await socket.frames(len(expected[name])) for name, socket in sockets.items()}
        finally:
            for socket in sockets.values():
                await socket.close()

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


class SlowMailServer(locmem.EmailBackend):
    """A mail server that takes 20 ms a message."""

    def send_messages(self, messages):
        time.sleep(0.02 * len(messages))
        return super().send_messages(messages)


def unsent_notifications(user, lot, count: int) -> None:
    Notification.objects.bulk_create(
        Notification(user=user, lot=lot, type="OUTBID", payload={"lot_id": lot.pk, "title": lot.title})
        for _ in range(count)
    )


@pytest.mark.django_db(transaction=True)
async def test_a_slow_mail_server_never_holds_back_a_close(settings, make_lot, bidder, mailoutbox):
    settings.EMAIL_BACKEND = f"{__name__}.SlowMailServer"
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    # Two and a half seconds of e-mail to send, and a lot ending in the middle of it.
    await database_sync_to_async(unsent_notifications)(bidder, lot, 120)
    ending = await database_sync_to_async(make_lot)(ends_at=in_seconds(1))

    async with running_clock():
        closed_seen = await wait_for_status(ending.pk, LotStatus.CLOSED, timeout=4)
        await wait_until(
            lambda: not Notification.objects.filter(emailed_at__isnull=True).exists(), timeout=6, what="all e-mailed"
        )

    assert ending.ends_at <= closed_seen < ending.ends_at + timedelta(seconds=1)
    # Every one of them e-mailed once all the same (and the seller told the lot went unsold).
    assert Counter(mails()) == {
        ("alice", "You have been outbid on Art deco lamp"): 120,
        ("sam_seller", "Not sold: Art deco lamp"): 1,
    }


@pytest.mark.xfail(
    reason="run_clock runs its rounds through database_sync_to_async's one shared thread, which every consumer of "
    "the process (manage.py serve) uses too: a long round holds up every socket. thread_sensitive=False fixes it, "
    "but the SQLite leg's shared-cache in-memory test database then fails with 'database table is locked'",
    strict=False,
)
@pytest.mark.django_db(transaction=True)
async def test_a_busy_clock_never_holds_back_the_sockets_of_its_process(make_lot, bidder):
    """In `manage.py serve` the clock shares the process with every socket."""
    await database_sync_to_async(make_lot)(ends_at=in_seconds(0.2))
    other = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    inside, release = threading.Event(), threading.Event()

    def a_long_close(**kwargs):
        inside.set()
        release.wait(10)
        finish_lot(**kwargs)

    with mock.patch.object(services, "finish_lot", a_long_close):
        async with running_clock():
            while not inside.is_set():
                await asyncio.sleep(0.01)
            try:
                # The clock is in the middle of a round: a bidder still gets answers at once.
                socket = await asyncio.wait_for(Socket.open(f"/ws/lots/{other.pk}/", user=bidder), 1)
                status = await socket.wait_for("LOT_STATUS", timeout=2)
                await socket.communicator.send_json_to({"type": "NEW_BID", "amount": "10.00", "request_id": "r1"})
                accepted = await socket.wait_for("BID_ACCEPTED", timeout=2)
                await socket.close()
            finally:
                release.set()

    assert (status["lot"]["id"], accepted["request_id"], accepted["leading"]) == (other.pk, "r1", True)
