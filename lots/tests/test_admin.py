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

from lots import services
from lots.exceptions import LotActionRefused
from lots.models import Lot, LotStatus
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
        response = post_change(
            admin, lot, ends_at=new_end, hard_ends_at=new_end + timedelta(hours=1), title="Lamp (restored)"
        )

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


def test_a_lot_added_in_the_admin_is_made_by_the_service(admin, seller, django_capture_on_commit_callbacks):
    data = form_data(admin, f"{CHANGELIST}add/")
    ends_at = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    data.update(seller=str(seller.pk), title="Pewter jug", currency="usd", starting_price="10.00")
    data["starts_at_0"], data["starts_at_1"] = split(timezone.now())
    data["ends_at_0"], data["ends_at_1"] = split(ends_at)
    data["hard_ends_at_0"], data["hard_ends_at_1"] = split(ends_at + timedelta(hours=1))

    with mock.patch("lots.admin.services.create_lot", wraps=services.create_lot) as create:
        response = admin.post(f"{CHANGELIST}add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    create.assert_called_once()
    lot = Lot.objects.get(title="Pewter jug")
    # The service's rules applied: the currency normalised, a draft until opened.
    assert (lot.seller, lot.currency, lot.status, lot.ends_at) == (seller, "USD", LotStatus.DRAFT, ends_at)


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
