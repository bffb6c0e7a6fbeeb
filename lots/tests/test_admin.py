"""The Django admin writes lots through the lot services, as the API does.

A change saved in the admin takes the lot's lock, meets the API's rules,
stores its `LOT_UPDATED` with the next `seq` and wakes the clock; a refusal
is an error on the form (never a 500); deleting, one lot or in bulk, goes
through `delete_lot`.
"""

from datetime import UTC, timedelta
from decimal import Decimal as D
from html.parser import HTMLParser
from unittest import mock

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from lots import services
from lots.exceptions import LotActionRefused
from lots.models import Auction, Lot, LotAlias, LotEvent, LotStatus, Watch
from testsupport.bidding import bid, lot_events

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/lots/lot/"


class FormFields(HTMLParser):
    """The fields a browser would post for the page's form: inputs, selects and textareas as rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "file", "button"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.data[name] = attrs.get("value") or ""
        elif tag == "select" and name:
            self.select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self.select and "selected" in attrs:
            self.data[self.select] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self.textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data):
        if self.textarea:
            self.data[self.textarea] += data.lstrip("\n") if not self.data[self.textarea] else data


def form_data(client, url: str) -> dict[str, str]:
    page = client.get(url)
    assert page.status_code == 200
    parser = FormFields()
    parser.feed(page.content.decode())
    data = parser.data
    data.pop("csrfmiddlewaretoken", None)
    return data


def split(when) -> tuple[str, str]:
    """A time as the admin's split date and time inputs take it (in the site's time zone)."""
    local = timezone.localtime(when)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


@pytest.fixture
def admin(client, staff_user):
    client.force_login(staff_user)
    return client


def change_url(lot) -> str:
    return f"{CHANGELIST}{lot.pk}/change/"


def post_change(admin, lot, **changes):
    data = form_data(admin, change_url(lot))
    for name, value in changes.items():
        if name.endswith("_at"):
            data[f"{name}_0"], data[f"{name}_1"] = split(value)
        else:
            data[name] = value
    return admin.post(change_url(lot), data)


def test_a_changed_end_is_an_event_with_the_next_seq_and_wakes_the_clock(
    admin, make_lot, bidder, django_capture_on_commit_callbacks
):
    lot = make_lot(starting_price="10.00", ends_at=timezone.now() + timedelta(hours=2))
    bid(lot, bidder, "10.00")
    new_end = (timezone.now() + timedelta(hours=5)).replace(microsecond=0)

    with (
        mock.patch("lots.events.broadcast_many") as broadcast,
        mock.patch("lots.events.wake_clocks") as wake_clocks,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_change(admin, lot, ends_at=new_end, title="Lamp (restored)")

    assert response.status_code == 302, response.context["adminform"].form.errors
    lot.refresh_from_db()
    assert (lot.ends_at, lot.title, lot.seq) == (new_end, "Lamp (restored)", 2)
    updated = lot_events(lot)[-1]
    assert (updated["type"], updated["seq"]) == ("LOT_UPDATED", 2)
    assert updated["lot"]["title"] == "Lamp (restored)"
    assert updated["lot"]["ends_at"].startswith(new_end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    # Broadcast after commit, and the clocks woken for the new end.
    [call] = broadcast.call_args_list
    [(lot_id, _, events, _)] = call.args[0]
    assert lot_id == lot.pk
    assert [seq for seq, _ in events] == [2]
    wake_clocks.assert_called_once_with()


def test_a_price_change_once_bidding_started_is_refused_on_the_form(admin, make_lot, bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    response = post_change(admin, lot, starting_price="5.00", title="Renamed")

    assert response.status_code == 200
    assert "Prices cannot change once bidding has started. (lot_has_bids)" in response.content.decode()
    lot.refresh_from_db()
    # Nothing of the refused save stands: neither the price nor the title that came with it.
    assert (lot.starting_price, lot.title, lot.seq) == (D("10.00"), "Art deco lamp", 1)
    assert [e["type"] for e in lot_events(lot)] == ["NEW_BID"]


def test_an_open_lots_end_in_the_past_is_an_error_on_its_field(admin, make_lot):
    lot = make_lot(starting_price="10.00")
    Lot.objects.filter(pk=lot.pk).update(starts_at=timezone.now() - timedelta(hours=2))  # open for a while

    response = post_change(admin, lot, ends_at=timezone.now() - timedelta(minutes=5))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors.get("ends_at") == ["An open lot must end in the future. (invalid_schedule)"]
    assert Lot.objects.get(pk=lot.pk).seq == 0


def test_an_ended_lot_cannot_be_edited(admin, make_lot, seller):
    lot = make_lot(starting_price="10.00")
    services.close_lot(lot_id=lot.pk, actor=seller)

    response = post_change(admin, lot, title="Too late")

    assert response.status_code == 200
    assert "An ended lot cannot be edited. (lot_closed)" in response.content.decode()
    assert Lot.objects.get(pk=lot.pk).title == "Art deco lamp"


def add_lot(admin, seller, *, starts_at, **fields):
    """Post the add form as a browser would: its initial values, the fields given, a day to run."""
    data = form_data(admin, f"{CHANGELIST}add/")
    ends_at = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    data.update(seller=str(seller.pk), title="Pewter jug", starting_price="10.00", **fields)
    data["starts_at_0"], data["starts_at_1"] = split(starts_at)
    data["ends_at_0"], data["ends_at_1"] = split(ends_at)
    return admin.post(f"{CHANGELIST}add/", data, follow=True), ends_at


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_a_lot_added_in_the_admin_is_made_by_the_service_and_opens_as_over_the_api(admin, seller, settings, client_for):
    with mock.patch("lots.admin.services.create_lot", wraps=services.create_lot) as create:
        response, ends_at = add_lot(admin, seller, starts_at=timezone.now(), currency="usd")

    assert response.redirect_chain, response.context["adminform"].form.errors
    create.assert_called_once()
    lot = Lot.objects.get(title="Pewter jug")
    # The service's rules applied: the currency normalised, open now like a lot posted to the API
    # with the same start, and the hard end worked out from the end.
    assert (lot.seller, lot.currency, lot.status, lot.ends_at) == (seller, "USD", LotStatus.OPEN, ends_at)
    assert lot.hard_ends_at == ends_at + settings.AUCTION_DEFAULT_MAX_EXTENSION
    over_api = client_for(seller).post(
        "/api/lots/",
        {"title": "Jug", "starting_price": "10.00", "starts_at": timezone.now(), "ends_at": ends_at},
        format="json",
    )
    assert over_api.status_code == 201, over_api.content
    created = over_api.json()
    assert (created["status"], parse_datetime(created["hard_ends_at"])) == ("open", lot.hard_ends_at)
    assert not any("draft" in message for message in shown_messages(response))


def test_the_add_form_asks_for_no_hard_end_and_offers_the_default_currency(admin, settings, seller):
    settings.AUCTION_DEFAULT_CURRENCY = "EUR"

    data = form_data(admin, f"{CHANGELIST}add/")

    assert not any(name.startswith("hard_ends_at") for name in data)
    assert data["currency"] == "EUR"
    # Posted as offered, it is the currency the service gives a lot created without one.
    add_lot(admin, seller, starts_at=timezone.now(), currency=data["currency"])
    made_by_service = services.create_lot(
        seller=seller, title="No currency", starting_price="5.00", ends_at=timezone.now() + timedelta(days=1)
    )
    assert Lot.objects.get(title="Pewter jug").currency == made_by_service.currency == "EUR"


def test_a_lot_kept_a_draft_says_so(admin, seller):
    response, _ = add_lot(admin, seller, starts_at=timezone.now() - timedelta(minutes=5), draft="on")

    lot = Lot.objects.get(title="Pewter jug")
    assert lot.status == LotStatus.DRAFT
    assert "Saved as a draft: use the Open action to open bidding." in shown_messages(response)

    # Saved again, it is still a draft, and the page says so again.
    again = post_change(admin, lot, title="Pewter jug (dented)")
    assert again.status_code == 302
    assert "Saved as a draft: use the Open action to open bidding." in shown_messages(admin.get(again.url))


def test_a_lot_starting_later_is_scheduled_and_says_when(admin, seller):
    starts_at = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)

    response, _ = add_lot(admin, seller, starts_at=starts_at)

    lot = Lot.objects.get(title="Pewter jug")
    assert (lot.status, lot.starts_at) == (LotStatus.SCHEDULED, starts_at)
    shown = timezone.localtime(starts_at).strftime("%Y-%m-%d %H:%M:%S")
    assert any(message.startswith(f"Scheduled: bidding opens at {shown}") for message in shown_messages(response))


def test_a_scheduled_lots_start_moved_to_the_past_is_left_to_the_clock_as_over_the_api(admin, make_lot):
    lot = make_lot(starts_at=timezone.now() + timedelta(hours=1), ends_at=timezone.now() + timedelta(hours=3))
    assert lot.status == LotStatus.SCHEDULED

    with mock.patch("lots.admin.services.update_lot", wraps=services.update_lot) as update:
        response = post_change(admin, lot, starts_at=timezone.now() - timedelta(minutes=1))

    assert response.status_code == 302, response.context["adminform"].form.errors
    update.assert_called_once()
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.SCHEDULED
    assert "Scheduled: its start has passed, so the clock opens bidding at once." in shown_messages(
        admin.get(response.url)
    )
    services.open_next_due_lot(now=timezone.now())
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


INTERNAL_FIELDS = (
    "hard_ends_at",
    "status",
    "current_price",
    "high_bidder",
    "high_max_amount",
    "bid_count",
    "winner",
    "final_price",
    "closed_at",
    "ending_soon_sent_at",
    "seq",
)


def test_the_bidding_and_clock_fields_cannot_be_edited(admin, make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00", ends_at=timezone.now() + timedelta(hours=2))
    bid(lot, bidder, "10.00")
    before = Lot.objects.filter(pk=lot.pk).values(*INTERNAL_FIELDS).get()

    page = form_data(admin, change_url(lot))
    forged = {
        "hard_ends_at_0": "2099-01-01",
        "hard_ends_at_1": "00:00:00",
        "status": "closed",
        "current_price": "999.00",
        "high_bidder": str(other_bidder.pk),
        "high_max_amount": "999.00",
        "bid_count": "0",
        "winner": str(other_bidder.pk),
        "final_price": "1.00",
        "closed_at_0": "2020-01-01",
        "closed_at_1": "00:00:00",
        "ending_soon_sent_at_0": "2020-01-01",
        "ending_soon_sent_at_1": "00:00:00",
        "seq": "0",
    }
    assert not set(forged) & set(page), "the change form offers an internal field"
    response = admin.post(change_url(lot), {**page, **forged, "title": "Lamp (restored)"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    after = Lot.objects.filter(pk=lot.pk).values(*INTERNAL_FIELDS, "title").get()
    # The title saved (a LOT_UPDATED: seq 2); nothing else moved.
    assert after == {**before, "seq": before["seq"] + 1, "title": "Lamp (restored)"}


def test_an_end_moved_past_the_hard_end_moves_it_as_over_the_api(admin, make_lot, settings):
    lot = make_lot(ends_at=timezone.now() + timedelta(hours=1))
    new_end = (lot.hard_ends_at + timedelta(hours=2)).replace(microsecond=0)

    response = post_change(admin, lot, ends_at=new_end)

    assert response.status_code == 302, response.context["adminform"].form.errors
    lot.refresh_from_db()
    assert (lot.ends_at, lot.hard_ends_at) == (new_end, new_end + settings.AUCTION_DEFAULT_MAX_EXTENSION)


def test_deleting_a_lot_with_bids_is_refused(admin, make_lot, bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    single = admin.post(f"{CHANGELIST}{lot.pk}/delete/", {"post": "yes"})
    bulk = admin.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [lot.pk], "post": "yes"})

    assert (single.status_code, bulk.status_code) == (200, 200)
    assert "Cannot delete" in single.content.decode()
    assert Lot.objects.filter(pk=lot.pk).exists()


def test_a_refusal_by_delete_lot_is_a_message_not_a_500(admin, make_lot):
    lot = make_lot(starting_price="10.00")
    refusal = LotActionRefused("lot_has_bids", "A lot with bids cannot be deleted; cancel it instead.")

    with mock.patch("lots.admin.services.delete_lot", side_effect=refusal):
        single = admin.post(f"{CHANGELIST}{lot.pk}/delete/", {"post": "yes"}, follow=True)
        bulk = admin.post(
            CHANGELIST, {"action": "delete_selected", "_selected_action": [lot.pk], "post": "yes"}, follow=True
        )

    assert single.status_code == bulk.status_code == 200
    for response in (single, bulk):
        shown = [str(m) for m in response.context["messages"]]
        assert any("cannot be deleted; cancel it instead. (lot_has_bids)" in m for m in shown), shown
    assert Lot.objects.filter(pk=lot.pk).exists()


def test_deleting_lots_without_bids_goes_through_the_service(admin, make_lot):
    one, two = make_lot(title="One"), make_lot(title="Two")

    with mock.patch("lots.admin.services.delete_lot", wraps=services.delete_lot) as delete:
        single = admin.post(f"{CHANGELIST}{one.pk}/delete/", {"post": "yes"})
        bulk = admin.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"})

    assert (single.status_code, bulk.status_code) == (302, 302)
    assert sorted(c.kwargs["lot_id"] for c in delete.call_args_list) == sorted([one.pk, two.pk])
    assert not Lot.objects.filter(pk__in=[one.pk, two.pk]).exists()


def test_the_admin_index_names_watches_properly(admin):
    page = admin.get("/admin/").content.decode()

    assert "Watches" in page
    assert "Watchs" not in page


def test_records_are_labelled_by_name_not_id(make_lot, bidder, staff_user):
    lot = make_lot(title="Vintage watch")
    services.watch_lot(lot_id=lot.pk, user=bidder)
    sale = Auction.objects.create(title="Spring sale", slug="spring")
    registration = services.register_for_auction(auction_id=sale.pk, user=bidder)
    services.update_lot(lot_id=lot.pk, actor=staff_user, changes={"title": "Vintage watch"})

    assert str(Watch.objects.get(lot=lot)) == "alice watches Vintage watch"
    assert str(registration) == f"Paddle {registration.paddle_number} (alice) in Spring sale"
    assert str(LotEvent.objects.get(lot=lot)) == "LOT_UPDATED #1 of Vintage watch"
    assert LotAlias._meta.verbose_name_plural == "lot aliases"


def test_staff_take_a_watch_off_through_the_service_and_add_or_edit_none(admin, make_lot, bidder):
    lot = make_lot()
    services.watch_lot(lot_id=lot.pk, user=bidder)
    watch = Watch.objects.get()

    with mock.patch.object(services, "unwatch_lot", wraps=services.unwatch_lot) as unwatch:
        response = admin.post(
            "/admin/lots/watch/", {"action": "delete_selected", "_selected_action": [watch.pk], "post": "yes"}
        )

    assert response.status_code == 302
    unwatch.assert_called_once_with(lot_id=lot.pk, user=bidder)
    assert not Watch.objects.exists()
    assert admin.get("/admin/lots/watch/add/").status_code == 403


def test_staff_make_and_edit_a_sale_through_the_sales_services(admin):
    inline = {
        "lots-TOTAL_FORMS": "0",
        "lots-INITIAL_FORMS": "0",
        "lots-MIN_NUM_FORMS": "0",
        "lots-MAX_NUM_FORMS": "1000",
    }
    sale = {"title": "Winter sale", "slug": "winter", "description": "", "stagger_seconds": "0", **inline}

    with mock.patch.object(services, "create_auction", wraps=services.create_auction) as create:
        added = admin.post("/admin/lots/auction/add/", sale)
    auction = Auction.objects.get(slug="winter")
    with mock.patch.object(services, "update_auction", wraps=services.update_auction) as update:
        changed = admin.post(f"/admin/lots/auction/{auction.pk}/change/", {**sale, "title": "Winter Clocks"})

    assert (added.status_code, changed.status_code) == (302, 302)
    create.assert_called_once()
    update.assert_called_once_with(auction_id=auction.pk, changes={"title": "Winter Clocks"})
    assert Auction.objects.get(pk=auction.pk).title == "Winter Clocks"
