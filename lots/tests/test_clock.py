"""The auction clock: lots open and close by themselves, exactly once, never early.

The async tests run the clock's threads (`running_clock`) as `manage.py serve`
does, on whichever database and channel layer the leg uses, and watch the
database and the lot's room the way a client would. They assert what must
hold; how late a close comes is `make bench`'s figure, not a test's.
"""

import asyncio
import logging
import time
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bids.exceptions import BidRejected
from bids.models import Bid
from lots.clock import run_due_work, seconds_until_next_due
from lots.mailer import send_due_emails
from lots.models import Lot, LotEvent, LotStatus, Notification
from lots.services import create_lot, finish_lot, open_lot, scheduling, settle_lot_if_due, update_lot, watch_lot
from lots.wakeups import wake_clocks
from realtime import fanout
from testsupport.bidding import bid, run_threads
from testsupport.clocks import (
    counted_rounds,
    in_seconds,
    open_lots,
    running_clock,
    wait_for_status,
    wait_until,
)
from testsupport.ws import Sockets

D = Decimal
# Without a wake-up, a clock sleeps this long: a test that passes in less proves it was woken.
LONG_SLEEP = 3600


def notices(lot) -> list[tuple[str, str]]:
    """(type, username) of the lot's notifications, in the order they were stored."""
    rows = Notification.objects.filter(lot=lot).select_related("user").order_by("id")
    return [(n.type, n.user.username) for n in rows]


def ended_events(lot) -> int:
    return LotEvent.objects.filter(lot=lot, type="AUCTION_ENDED").count()


def clock_round(now=None):
    """One round of the clock, then the mailer's."""
    tick = run_due_work(now=now)
    send_due_emails()
    return tick


# --- By themselves, with nobody asking --------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_lots_open_and_close_by_themselves_never_early(make_lot, bidder):
    async with running_clock():
        closing = await database_sync_to_async(make_lot)(ends_at=in_seconds(1.5))
        await database_sync_to_async(bid)(closing, bidder, "12.00")
        opening = await database_sync_to_async(make_lot)(starts_at=in_seconds(1.0), ends_at=in_seconds(3600))
        assert opening.status == LotStatus.SCHEDULED
        async with Sockets() as ws:
            watcher = await ws.open(f"/ws/lots/{closing.pk}/")
            assert (await watcher.wait_for("LOT_STATUS"))["lot"]["status"] == "open"

            opened_seen = await wait_for_status(opening.pk, LotStatus.OPEN)
            await wait_for_status(closing.pk, LotStatus.CLOSED)
            ended = await watcher.wait_for("AUCTION_ENDED", timeout=30)

    assert opening.starts_at <= opened_seen
    closed = await database_sync_to_async(Lot.objects.select_related("winner").get)(pk=closing.pk)
    assert closing.ends_at <= closed.closed_at
    assert (closed.winner.username, closed.final_price) == ("alice", D("12.00"))
    assert ended["lot"] == {
        "id": closing.pk,
        "status": "closed",
        "winner": "Bidder 1",
        "final_price": "12.00",
        "closed_at": ended["lot"]["closed_at"],
    }
    assert await database_sync_to_async(ended_events)(closing) == 1
    # Opening does not end the lot: it stays open until its own end.
    assert (await database_sync_to_async(Lot.objects.get)(pk=opening.pk)).closed_at is None


@pytest.mark.django_db(transaction=True)
async def test_a_sleeping_clock_wakes_up_for_a_new_lot(settings, seller):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    async with running_clock():
        # Nothing is due: the clock sleeps for an hour unless something wakes it.
        assert await database_sync_to_async(seconds_until_next_due)() == LONG_SLEEP
        lot = await database_sync_to_async(create_lot)(
            seller=seller, title="Clock", starting_price="10", ends_at=in_seconds(1)
        )
        await wait_for_status(lot.pk, LotStatus.CLOSED)

    closed = await database_sync_to_async(Lot.objects.get)(pk=lot.pk)
    assert lot.ends_at <= closed.closed_at


@pytest.mark.django_db(transaction=True)
async def test_a_sleeping_clock_wakes_up_when_a_lots_end_moves_earlier(settings, make_lot, seller):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    async with running_clock():
        new_end = in_seconds(1)
        await database_sync_to_async(update_lot)(lot_id=lot.pk, actor=seller, changes={"ends_at": new_end})
        await wait_for_status(lot.pk, LotStatus.CLOSED)

    closed = await database_sync_to_async(Lot.objects.get)(pk=lot.pk)
    assert new_end <= closed.closed_at
    assert await database_sync_to_async(ended_events)(lot) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_sleeping_clock_wakes_up_when_a_draft_is_opened_by_hand(settings, make_lot, seller):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    # A draft is in no clock's schedule until it opens.
    draft = await database_sync_to_async(make_lot)(ends_at=in_seconds(1.5), draft=True)
    async with running_clock():
        await database_sync_to_async(open_lot)(lot_id=draft.pk, actor=seller)
        await wait_for_status(draft.pk, LotStatus.CLOSED)

    closed = await database_sync_to_async(Lot.objects.get)(pk=draft.pk)
    assert draft.ends_at <= closed.closed_at


def fell_due_while_no_clock_ran(make_lot, bidder, other_bidder) -> tuple[Lot, Lot, Lot]:
    """A sold lot whose end passed, a scheduled lot whose start passed, one whose start and end passed."""
    sold = make_lot(ends_at=in_seconds(3600))
    bid(sold, bidder, "10.00")
    bid(sold, other_bidder, "15.00")
    missed_start = make_lot(starts_at=in_seconds(1800), ends_at=in_seconds(3600))
    missed_both = make_lot(starts_at=in_seconds(1800), ends_at=in_seconds(3600))
    past = timezone.now() - timedelta(minutes=5)
    Lot.objects.filter(pk__in=[sold.pk, missed_both.pk]).update(starts_at=past - timedelta(hours=1), ends_at=past)
    Lot.objects.filter(pk=missed_start.pk).update(starts_at=past)
    return sold, missed_start, missed_both


@pytest.mark.django_db(transaction=True)
async def test_a_clock_started_late_catches_up(make_lot, bidder, other_bidder):
    sold, missed_start, missed_both = await database_sync_to_async(fell_due_while_no_clock_ran)(
        make_lot, bidder, other_bidder
    )

    async with running_clock():
        await wait_for_status(sold.pk, LotStatus.CLOSED)
        await wait_for_status(missed_start.pk, LotStatus.OPEN)
        await wait_for_status(missed_both.pk, LotStatus.CLOSED)

    sold = await database_sync_to_async(Lot.objects.select_related("winner").get)(pk=sold.pk)
    assert (sold.winner.username, sold.final_price) == ("bob", D("15.00"))
    missed_both = await database_sync_to_async(Lot.objects.get)(pk=missed_both.pk)
    # It never took a bid: it ends unsold, and nobody may bid on it now.
    assert (missed_both.winner_id, missed_both.final_price) == (None, None)
    with pytest.raises(BidRejected) as refused:
        await database_sync_to_async(bid)(missed_both, bidder, "10.00")
    assert refused.value.code == "lot_closed"
    for lot in (sold, missed_both):
        assert await database_sync_to_async(ended_events)(lot) == 1


@pytest.mark.django_db(transaction=True)
async def test_the_clock_honours_a_soft_close_extension(make_lot, bidder):
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(1.0), soft_close_seconds=2)
    async with running_clock():
        extended = (await database_sync_to_async(bid)(lot, bidder, "10.00")).lot
        assert extended.ends_at > lot.ends_at + timedelta(seconds=0.5)
        await wait_for_status(lot.pk, LotStatus.CLOSED)

    closed = await database_sync_to_async(Lot.objects.select_related("winner").get)(pk=lot.pk)
    # The clock went by the new end, not the old one.
    assert extended.ends_at <= closed.closed_at
    assert closed.winner.username == "alice"


@pytest.mark.django_db(transaction=True)
async def test_with_the_fanouts_redis_down_lots_still_close_and_the_failure_is_told_once(
    redis_unreachable, make_lot, caplog
):
    # Nothing listens on port 1: every publish of this loop's fan-out (made for that address) fails at once.
    lots = [await database_sync_to_async(make_lot)(ends_at=in_seconds(0.5 + i / 10)) for i in range(5)]
    caplog.clear()

    try:
        async with running_clock():
            for lot in lots:
                await wait_for_status(lot.pk, LotStatus.CLOSED)
            await wait_until(
                lambda: any("broadcasts failing" in r.getMessage() for r in caplog.records), what="the failure told"
            )
    finally:
        await fanout.close_hub()  # This loop's hub, made for the dead address.

    failures = [r for r in caplog.records if "broadcasts failing" in r.getMessage()]
    assert len(failures) == 1, f"{len(failures)} warnings for one outage"
    assert not [r for r in caplog.records if r.name.startswith("lots.") and r.levelno >= logging.ERROR]
    for lot in lots:
        assert await database_sync_to_async(ended_events)(lot) == 1


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_wake_ups_costs_a_few_rounds_not_one_each(settings):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    with counted_rounds() as rounds:
        async with running_clock():
            await wait_until(lambda: rounds, what="the first round")
            await asyncio.sleep(0.5)
            before = len(rounds)
            # What 50 schedule changes committed at once send every clock.
            await database_sync_to_async(lambda: [wake_clocks() for _ in range(50)])()
            await wait_until(lambda: len(rounds) > before, what="a round for the burst")
            await asyncio.sleep(0.5)
            after = len(rounds)

    assert after - before <= 10, f"{after - before} rounds for one burst of 50 wake-ups"


@pytest.mark.django_db(transaction=True)
async def test_time_driven_by_an_injected_now_closes_exactly_at_the_end(settings, make_lot, bidder):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    await database_sync_to_async(bid)(lot, bidder, "10.00")
    clock_time = [lot.ends_at - timedelta(microseconds=1)]
    with counted_rounds() as rounds:
        async with running_clock(now=lambda: clock_time[0]) as running:
            await wait_until(lambda: rounds, what="the first round")
            running.clock.wake()
            await wait_until(lambda: len(rounds) >= 2, what="a second round before the end")
            # A microsecond before its end, in any number of rounds, the lot stays open.
            assert (await database_sync_to_async(Lot.objects.get)(pk=lot.pk)).status == LotStatus.OPEN
            clock_time[0] = lot.ends_at
            running.clock.wake()
            await wait_for_status(lot.pk, LotStatus.CLOSED)

    closed = await database_sync_to_async(Lot.objects.get)(pk=lot.pk)
    assert (closed.closed_at, closed.winner_id) == (lot.ends_at, bidder.pk)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_a_clock_whose_listening_connection_is_killed_still_wakes_up(settings, seller):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP

    def listeners() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN auction_clock'"
            )
            return {pid for (pid,) in cursor.fetchall()}

    def kill(pids: set[int]) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(pids)])

    async with running_clock(mail=False):
        await wait_until(listeners, what="the clock listening")
        first = await database_sync_to_async(listeners)()
        await database_sync_to_async(kill)(first)
        await wait_until(lambda: listeners() - first, what="the clock listening again")
        lot = await database_sync_to_async(create_lot)(
            seller=seller, title="Late", starting_price="10", ends_at=in_seconds(1)
        )
        await wait_for_status(lot.pk, LotStatus.CLOSED)


# --- The outcome of a close (run_due_work is one round of the clock) ----------------


@pytest.mark.django_db
def test_reserve_not_met_ends_unsold(make_lot, bidder, mailoutbox):
    lot = make_lot(starting_price="10.00", reserve_price="100.00")
    bid(lot, bidder, "20.00")

    tick = clock_round(now=lot.ends_at)

    lot.refresh_from_db()
    assert (tick.closed, lot.status, lot.winner_id, lot.final_price) == (1, LotStatus.CLOSED, None, None)
    assert notices(lot) == [("LOT_UNSOLD", "sam_seller")]
    payload = Notification.objects.get(lot=lot).payload
    assert (payload["reserve_met"], payload["bid_count"]) == (False, 1)
    assert [m.subject for m in mailoutbox] == ["Not sold: Art deco lamp"]
    assert "the reserve was not met" in mailoutbox[0].body


@pytest.mark.django_db
def test_unsold_without_bids(make_lot, mailoutbox):
    lot = make_lot()

    clock_round(now=lot.ends_at)

    lot.refresh_from_db()
    assert (lot.status, lot.winner_id) == (LotStatus.CLOSED, None)
    assert notices(lot) == [("LOT_UNSOLD", "sam_seller")]
    assert "reserve" not in mailoutbox[0].body


@pytest.mark.django_db
def test_winner_and_price_after_proxy_bidding(make_lot, bidder, other_bidder, third_bidder, mailoutbox):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="50.00")
    bid(lot, other_bidder, "20.00")
    bid(lot, third_bidder, "30.00")

    clock_round(now=lot.ends_at)

    lot.refresh_from_db()
    # alice's proxy answered 30.00 with one increment (1.00 from 25 up), within her 50.00.
    assert (lot.status, lot.winner.username, lot.final_price) == (LotStatus.CLOSED, "alice", D("31.00"))
    assert notices(lot) == [
        ("OUTBID", "bob"),
        ("OUTBID", "carol"),
        ("WON", "alice"),
        ("LOT_SOLD", "sam_seller"),
    ]
    won = Notification.objects.get(lot=lot, type="WON").payload
    assert won["final_price"] == "31.00"
    assert Notification.objects.get(lot=lot, type="LOT_SOLD").payload["winner"] == "alice"
    by_recipient = {m.to[0]: m.subject for m in mailoutbox}
    assert by_recipient["alice@example.com"] == "You won Art deco lamp"
    assert by_recipient["sam_seller@example.com"] == "Sold: Art deco lamp"
    assert "for USD 31.00" in next(m.body for m in mailoutbox if m.to == ["alice@example.com"])


@pytest.mark.django_db
def test_nothing_closes_before_its_end(make_lot, bidder):
    lot = make_lot()
    bid(lot, bidder, "10.00")

    tick = run_due_work(now=lot.ends_at - timedelta(microseconds=1))

    lot.refresh_from_db()
    assert (tick.closed, lot.status, lot.closed_at) == (0, LotStatus.OPEN, None)


@pytest.mark.django_db
def test_a_second_round_finds_nothing_to_do(make_lot, bidder):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    scheduled = make_lot(starts_at=in_seconds(60), ends_at=in_seconds(7200))

    first = run_due_work(now=lot.ends_at)
    again = run_due_work(now=lot.ends_at + timedelta(seconds=1))

    assert (first.opened, first.closed) == (1, 1)
    assert (again.opened, again.closed, again.warned) == (0, 0, 0)
    assert ended_events(lot) == 1
    assert Lot.objects.get(pk=scheduled.pk).status == LotStatus.OPEN


@pytest.mark.django_db
def test_a_long_round_stamps_each_lot_when_it_really_closed(settings, make_lot, make_user):
    settings.AUCTION_ENDING_SOON_SECONDS = 60
    first = make_lot(ends_at=in_seconds(0.2))
    second = make_lot(ends_at=in_seconds(0.5))
    watch_lot(lot_id=second.pk, user=make_user("walter"))
    while timezone.now() < first.ends_at:
        pass
    slow = iter([0.6])

    def slow_first_close(**kwargs):
        finish_lot(**kwargs)
        time.sleep(next(slow, 0))

    with mock.patch.object(scheduling, "finish_lot", slow_first_close):
        tick = run_due_work()

    first.refresh_from_db()
    second.refresh_from_db()
    # The second fell due while the first was closing: closed in the same round, at its real time.
    assert (tick.closed, second.status) == (2, LotStatus.CLOSED)
    assert first.closed_at < second.ends_at <= second.closed_at
    # ...and never told its watchers it ends soon once it had ended.
    assert notices(second) == [("LOT_UNSOLD", "sam_seller")]


@pytest.mark.django_db
def test_the_clock_sleeps_until_the_next_due_time(settings, make_lot):
    settings.AUCTION_ENDING_SOON_SECONDS = 60
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = 30
    warned = make_lot(ends_at=in_seconds(70))
    make_lot(starts_at=in_seconds(20), ends_at=in_seconds(3600))

    # The earliest: the warning 60 s before the open lot's end.
    assert 9 < seconds_until_next_due() <= 10

    Lot.objects.filter(pk=warned.pk).update(ending_soon_sent_at=timezone.now())

    # Then the scheduled lot's start.
    assert 19 < seconds_until_next_due() <= 20


@pytest.mark.django_db
def test_the_clock_never_sleeps_past_its_limit_nor_not_at_all(settings, make_lot):
    settings.AUCTION_ENDING_SOON_SECONDS = 0
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = 5
    lot = make_lot(ends_at=in_seconds(3600))
    assert seconds_until_next_due() == 5

    past = timezone.now() - timedelta(seconds=1)
    Lot.objects.filter(pk=lot.pk).update(starts_at=past - timedelta(hours=1), ends_at=past)

    assert 0 < seconds_until_next_due() < 0.1


# --- Correctness without any clock ----------------------------------------------------


@pytest.mark.django_db
def test_a_bid_after_the_end_is_refused_with_the_clock_down(make_lot, bidder, other_bidder, client_for):
    lot = make_lot(ends_at=in_seconds(0.3))
    bid(lot, bidder, "10.00")
    while timezone.now() < lot.ends_at:
        pass

    # No clock ran: the lot is still marked open, but its end has passed.
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN
    with pytest.raises(BidRejected) as refused:
        bid(lot, other_bidder, "20.00")
    response = client_for(other_bidder).post(f"/api/lots/{lot.pk}/bids/", {"amount": "30.00"}, format="json")

    assert refused.value.code == "lot_closed"
    assert (response.status_code, response.json()["code"]) == (409, "lot_closed")
    assert list(Bid.objects.filter(lot=lot).values_list("bidder__username", flat=True)) == ["alice"]


@pytest.mark.django_db
def test_a_bid_is_stamped_with_the_moment_it_was_accepted(make_lot, bidder):
    lot = make_lot()
    accepted_at = lot.ends_at - timedelta(seconds=1)

    outcome = bid(lot, bidder, "10.00", now=accepted_at)

    assert Bid.objects.get(pk=outcome.bid.pk).created_at == accepted_at


@pytest.mark.django_db
def test_a_lot_read_after_its_end_shows_its_outcome_with_no_clock(make_lot, bidder, other_bidder, api_client):
    lot = make_lot(ends_at=in_seconds(0.3))
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "12.00")
    while timezone.now() < lot.ends_at:
        pass

    data = api_client.get(f"/api/lots/{lot.pk}/").json()

    assert (data["status"], data["winner"], data["final_price"]) == ("closed", "Bidder 2", "12.00")
    assert data["closed_at"] is not None
    # Settled once: a later read or clock round closes nothing more.
    assert api_client.get(f"/api/lots/{lot.pk}/").json()["closed_at"] == data["closed_at"]
    assert run_due_work().closed == 0
    assert ended_events(lot) == 1
    assert notices(lot) == [("OUTBID", "alice"), ("WON", "bob"), ("LOT_SOLD", "sam_seller")]


@pytest.mark.django_db
def test_a_scheduled_lot_read_after_its_start_shows_it_open(make_lot, api_client):
    lot = make_lot(starts_at=in_seconds(0.2), ends_at=in_seconds(3600))
    while timezone.now() < lot.starts_at:
        pass

    assert api_client.get(f"/api/lots/{lot.pk}/").json()["status"] == "open"


@pytest.mark.django_db
def test_settling_before_the_end_changes_nothing(make_lot):
    lot = make_lot()

    assert settle_lot_if_due(lot=lot) is False
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


# --- Clocks side by side, for real on PostgreSQL --------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_clock_rounds_in_many_threads_close_each_lot_once(seller, bidder):
    now = timezone.now()
    lots = open_lots(seller, [now + timedelta(hours=1)] * 200)
    for lot in lots[::10]:
        bid(lot, bidder, "10.00")
    Lot.objects.update(starts_at=now - timedelta(hours=1), ends_at=now - timedelta(seconds=1))

    closed = run_threads(lambda: run_due_work().closed, [()] * 8)

    assert sum(closed) == 200
    assert sum(1 for count in closed if count) > 1, f"one thread did all the work: {closed}"
    assert not Lot.objects.exclude(status=LotStatus.CLOSED).exists()
    per_lot = LotEvent.objects.filter(type="AUCTION_ENDED").values("lot").annotate(n=Count("id"))
    assert sorted({row["n"] for row in per_lot}) == [1]
    assert per_lot.count() == 200
    assert Notification.objects.filter(type="WON", user=bidder).count() == 20
    assert Notification.objects.filter(type="LOT_UNSOLD").count() == 180


@pytest.mark.django_db(transaction=True)
def test_a_schedule_change_wakes_the_clocks_only_when_it_commits(settings):
    from django.db import transaction

    from lots.wakeups import CLOCK_CHANNEL, Listener

    listener = Listener(CLOCK_CHANNEL)
    try:
        if connection.vendor == "postgresql":
            # The first wait after LISTEN takes effect returns at once (nothing sent before it is lost).
            assert listener.wait(30) is True
        with pytest.raises(RuntimeError), transaction.atomic():
            wake_clocks()
            raise RuntimeError("rolled back")
        # A rolled-back change wakes nobody (a short wait: a wrong wake-up comes at once).
        assert listener.wait(0.5) is False
        with transaction.atomic():
            wake_clocks()
            # Not before the commit either.
            assert listener.wait(0.5) is False
        assert listener.wait(30) is True
    finally:
        listener.close()


@pytest.mark.django_db(transaction=True)
async def test_an_outbidding_bid_wakes_the_mailer_not_the_clock(settings, make_lot, bidder, other_bidder, mailoutbox):
    settings.AUCTION_CLOCK_MAX_SLEEP_SECONDS = LONG_SLEEP
    settings.AUCTION_MAIL_POLL_SECONDS = LONG_SLEEP
    lot = await database_sync_to_async(make_lot)(ends_at=in_seconds(3600))
    with counted_rounds() as rounds:
        async with running_clock():
            await wait_until(lambda: rounds, what="the first round")
            await asyncio.sleep(0.5)
            before = len(rounds)
            await database_sync_to_async(bid)(lot, bidder, "10.00")
            await database_sync_to_async(bid)(lot, other_bidder, "12.00")
            # The OUTBID e-mail goes out at once: its notification woke the mailer...
            await wait_until(lambda: len(mailoutbox) == 1, what="the OUTBID e-mail")
            after = len(rounds)

    # ...and no clock round ran for it.
    assert after == before, f"{after - before} clock rounds for two bids"
    assert [m.to for m in mailoutbox] == [["alice@example.com"]]


def test_a_listener_wakes_up_with_thousands_of_sockets_open_in_the_process():
    """A server with thousands of sockets hands a listener descriptors past select()'s 1024."""
    import socket

    from lots.wakeups import CLOCK_CHANNEL, Listener

    held = [socket.socketpair() for _ in range(600)]
    listener = Listener(CLOCK_CHANNEL, on_database=False)
    try:
        assert listener._interrupt_read.fileno() > 1024
        listener.interrupt()
        assert listener.wait(30) is True
        assert listener.wait(0.01) is False
    finally:
        listener.close()
        for pair in held:
            for end in pair:
                end.close()
