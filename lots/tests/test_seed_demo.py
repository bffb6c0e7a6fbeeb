"""`manage.py seed_demo` (run by `make run`): the demo lots are open whenever it has run, however long ago it first did."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from lots.management.commands.seed_demo import DEMO_LOTS, OPEN_AT_LEAST, keep_demo_lots_open
from lots.models import Auction, Lot, LotStatus
from lots.services import close_due_lots

pytestmark = pytest.mark.django_db


def open_demo_lots(now) -> list[Lot]:
    return list(Lot.objects.filter(status=LotStatus.OPEN, ends_at__gte=now + OPEN_AT_LEAST))


def test_every_demo_lot_is_open_for_hours_and_one_sale_takes_registrations(staff_user):
    now = timezone.now()

    lots = keep_demo_lots_open(seller=staff_user, now=now)

    assert len(lots) == len(DEMO_LOTS) >= 4
    assert open_demo_lots(now) == sorted(lots, key=lambda lot: (lot.ends_at, lot.pk))
    assert all(lot.ends_at >= now + timedelta(days=1) for lot in lots)
    # The README's examples name lot 1 of a fresh database: the first demo lot, open for a month.
    assert lots[0].ends_at == now + timedelta(days=30)
    registration_sale = Auction.objects.get(requires_registration=True)
    assert any(lot.auction == registration_sale for lot in lots)


def test_seeding_again_while_the_lots_are_open_creates_nothing(staff_user):
    now = timezone.now()
    first = keep_demo_lots_open(seller=staff_user, now=now)

    again = keep_demo_lots_open(seller=staff_user, now=now + timedelta(hours=5))

    assert again == first
    assert Lot.objects.count() == len(DEMO_LOTS)
    assert Auction.objects.count() == 2


def test_lots_that_ended_stay_closed_and_fresh_ones_open_in_their_place(staff_user):
    seeded_at = timezone.now()
    first = keep_demo_lots_open(seller=staff_user, now=seeded_at)
    # Months later: every demo lot has ended, and the clock closed them.
    later = seeded_at + timedelta(days=90)
    assert len(close_due_lots(now=later)) == len(DEMO_LOTS)

    again = keep_demo_lots_open(seller=staff_user, now=later)

    assert {lot.pk for lot in again}.isdisjoint(lot.pk for lot in first)
    assert len(open_demo_lots(later)) == len(DEMO_LOTS)
    assert Lot.objects.filter(pk__in=[lot.pk for lot in first], status=LotStatus.CLOSED).count() == len(first)


def test_a_lot_ending_within_the_hour_gets_a_successor(staff_user):
    now = timezone.now()
    first = keep_demo_lots_open(seller=staff_user, now=now)
    shortest = min(first, key=lambda lot: lot.ends_at)
    almost_over = shortest.ends_at - OPEN_AT_LEAST + timedelta(minutes=1)

    again = keep_demo_lots_open(seller=staff_user, now=almost_over)

    replaced = [lot for lot in again if lot not in first]
    assert [lot.title for lot in replaced] == [shortest.title]
    assert replaced[0].ends_at > almost_over + OPEN_AT_LEAST


def test_the_command_prints_the_open_lots_with_their_links(settings):
    settings.DEBUG = True
    out = StringIO()

    call_command("seed_demo", "--url", "http://127.0.0.1:8080/", stdout=out)
    call_command("seed_demo", "--url", "http://127.0.0.1:8080/", stdout=out)

    printed = out.getvalue()
    assert Lot.objects.count() == len(DEMO_LOTS)
    for lot in Lot.objects.all():
        assert f"  {lot.pk}  {lot.title}" in printed
        assert f"http://127.0.0.1:8080/lots/{lot.pk}/" in printed
    assert "alice / alice-demo-pass" in printed
    assert "http://127.0.0.1:8080/auctions/collectors-sale/" in printed


def test_the_command_creates_nothing_when_debug_is_off(settings):
    settings.DEBUG = False
    out = StringIO()

    call_command("seed_demo", stdout=out)

    assert "DEBUG is off" in out.getvalue()
    assert not Lot.objects.exists()
