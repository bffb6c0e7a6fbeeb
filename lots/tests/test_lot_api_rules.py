"""REST rules found by an outside attacker (issue 15): hidden drafts, moving lots between sales,
shortening a lot after bids, ended lots in lists, and the one money format."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from bids.models import ChatMessage
from lots.models import Auction, Lot, LotStatus, Registration, RegistrationStatus, Watch
from testsupport.bidding import bid, lot_events

pytestmark = pytest.mark.django_db


# --- 4. A draft is seen only by its seller and staff -----------------------------

# Every path that names a lot: (method, path under /api/lots/<id>/, body).
LOT_PATHS = [
    ("get", "", None),
    ("patch", "", {"title": "Mine now"}),
    ("delete", "", None),
    ("post", "open/", None),
    ("post", "close/", None),
    ("post", "cancel/", None),
    ("post", "watch/", None),
    ("delete", "watch/", None),
    ("get", "bids/", None),
    ("post", "bids/", {"amount": "20.00"}),
    ("post", "buy-now/", None),
    ("get", "chat/", None),
    ("post", "chat/", {"text": "hello"}),
    ("post", "chat/1/hide/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), LOT_PATHS, ids=[f"{m} {p or 'detail'}" for m, p, _ in LOT_PATHS])
def test_someone_elses_draft_is_not_found_on_every_path(make_lot, bidder, client_for, method, path, body):
    draft = make_lot(draft=True, buy_now_price="50.00")

    response = getattr(client_for(bidder), method)(f"/api/lots/{draft.pk}/{path}", body, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["code"] == "lot_not_found"
    untouched = Lot.objects.get(pk=draft.pk)
    assert (untouched.status, untouched.title, untouched.bid_count) == (LotStatus.DRAFT, draft.title, 0)
    assert not Watch.objects.exists()
    assert not ChatMessage.objects.exists()


def test_an_unknown_lot_answers_the_same(bidder, client_for):
    """The draft's answers above are exactly those for a lot that does not exist."""
    for method, path, body in LOT_PATHS:
        response = getattr(client_for(bidder), method)(f"/api/lots/424242/{path}", body, format="json")
        assert (response.status_code, response.json()["code"]) == (404, "lot_not_found"), (method, path)


def test_anonymous_reads_of_a_draft_are_not_found(make_lot, api_client):
    draft = make_lot(draft=True)

    for path in ("", "bids/", "chat/"):
        response = api_client.get(f"/api/lots/{draft.pk}/{path}")
        assert (response.status_code, response.json()["code"]) == (404, "lot_not_found")


def test_watchlist_never_shows_someone_elses_draft(make_lot, bidder, client_for):
    draft = make_lot(draft=True, title="Secret vase")
    public = make_lot(title="Public lamp")
    Watch.objects.create(user=bidder, lot=draft)  # e.g. watched before the check existed
    client = client_for(bidder)
    client.post(f"/api/lots/{public.pk}/watch/")

    titles = [lot["title"] for lot in client.get("/api/users/me/watchlist/").json()["results"]]

    assert titles == ["Public lamp"]


@pytest.mark.parametrize("who", ["seller", "staff_user"])
def test_seller_and_staff_see_and_watch_the_draft(make_lot, client_for, request, who):
    draft = make_lot(draft=True)
    client = client_for(request.getfixturevalue(who))

    assert client.get(f"/api/lots/{draft.pk}/").json()["status"] == "draft"
    assert client.post(f"/api/lots/{draft.pk}/watch/").status_code == 201
    assert client.patch(f"/api/lots/{draft.pk}/", {"title": "Renamed"}, format="json").status_code == 200


# --- 5. Only staff move a lot between sales, and never once it has bids ---------------


@pytest.fixture
def sale():
    return Auction.objects.create(title="Spring sale", slug="spring", requires_registration=True)


@pytest.fixture
def other_sale():
    return Auction.objects.create(title="Summer sale", slug="summer", requires_registration=False)


def approve(user, auction, paddle=1):
    Registration.objects.create(auction=auction, user=user, paddle_number=paddle, status=RegistrationStatus.APPROVED)


def test_seller_cannot_take_a_lot_with_bids_out_of_a_registration_sale(
    make_lot, staff_user, sale, seller, bidder, other_bidder, client_for
):
    lot = make_lot()
    Lot.objects.filter(pk=lot.pk).update(auction=sale)  # put there by staff
    approve(bidder, sale)
    bid(lot, bidder, "10.00")

    response = client_for(seller).patch(f"/api/lots/{lot.pk}/", {"auction": None}, format="json")

    assert (response.status_code, response.json()["code"]) == (403, "not_staff")
    assert Lot.objects.get(pk=lot.pk).auction_id == sale.pk
    refused = client_for(other_bidder).post(f"/api/lots/{lot.pk}/bids/", {"amount": "20.00"}, format="json")
    assert refused.json()["code"] == "not_registered"


@pytest.mark.parametrize("target", [None, "summer", "spring"])
def test_seller_never_moves_a_lot_between_sales(make_lot, sale, other_sale, seller, client_for, target):
    lot = make_lot()
    if target != "spring":
        Lot.objects.filter(pk=lot.pk).update(auction=sale)
    start = Lot.objects.get(pk=lot.pk).auction_id

    response = client_for(seller).patch(f"/api/lots/{lot.pk}/", {"auction": target}, format="json")

    assert (response.status_code, response.json()["code"]) == (403, "not_staff")
    assert Lot.objects.get(pk=lot.pk).auction_id == start


def test_seller_may_resend_the_lots_own_sale(make_lot, sale, seller, client_for):
    lot = make_lot()
    Lot.objects.filter(pk=lot.pk).update(auction=sale)

    response = client_for(seller).patch(f"/api/lots/{lot.pk}/", {"auction": "spring", "title": "New"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["auction"] == "spring"


def test_seller_cannot_create_a_lot_in_a_sale(sale, seller, client_for):
    body = {"title": "Lamp", "starting_price": "10.00", "ends_at": (timezone.now() + timedelta(hours=1)).isoformat()}

    response = client_for(seller).post("/api/lots/", {**body, "auction": "spring"}, format="json")

    assert (response.status_code, response.json()["code"]) == (403, "not_staff")
    assert not Lot.objects.exists()


@pytest.mark.parametrize("target", [None, "summer"])
def test_nobody_moves_an_open_lot_with_bids_between_sales(
    make_lot, sale, other_sale, staff_user, bidder, client_for, target
):
    lot = make_lot()
    Lot.objects.filter(pk=lot.pk).update(auction=sale)
    approve(bidder, sale)
    bid(lot, bidder, "10.00")

    response = client_for(staff_user).patch(f"/api/lots/{lot.pk}/", {"auction": target}, format="json")

    assert (response.status_code, response.json()["code"]) == (409, "lot_has_bids")
    assert Lot.objects.get(pk=lot.pk).auction_id == sale.pk


def test_staff_move_a_lot_without_bids(make_lot, sale, other_sale, staff_user, client_for):
    lot = make_lot()
    client = client_for(staff_user)

    assert client.patch(f"/api/lots/{lot.pk}/", {"auction": "spring"}, format="json").json()["auction"] == "spring"
    assert client.patch(f"/api/lots/{lot.pk}/", {"auction": "summer"}, format="json").json()["auction"] == "summer"
    assert client.patch(f"/api/lots/{lot.pk}/", {"auction": None}, format="json").json()["auction"] is None


# --- 6. Once a lot has bids, its end only moves later (earlier: staff, with a reason) ----


@pytest.fixture
def bid_on_lot(make_lot, bidder):
    lot = make_lot(ends_at=timezone.now() + timedelta(hours=2))
    bid(lot, bidder, "10.00")
    return Lot.objects.get(pk=lot.pk)


def _iso(moment):
    return moment.isoformat()


@pytest.mark.parametrize("field", ["ends_at", "hard_ends_at"])
def test_seller_cannot_move_the_end_earlier_after_bids(bid_on_lot, seller, client_for, field):
    earlier = getattr(bid_on_lot, field) - timedelta(minutes=30)

    response = client_for(seller).patch(
        f"/api/lots/{bid_on_lot.pk}/", {field: _iso(earlier), "reason": "I changed my mind"}, format="json"
    )

    assert (response.status_code, response.json()["code"]) == (409, "lot_has_bids")
    assert getattr(Lot.objects.get(pk=bid_on_lot.pk), field) == getattr(bid_on_lot, field)


def test_seller_may_move_the_end_later_after_bids(bid_on_lot, seller, client_for):
    later = bid_on_lot.ends_at + timedelta(hours=1)

    response = client_for(seller).patch(f"/api/lots/{bid_on_lot.pk}/", {"ends_at": _iso(later)}, format="json")

    assert response.status_code == 200, response.content
    assert parse_datetime(response.json()["ends_at"]) == later


def test_seller_may_move_the_end_earlier_before_any_bid(make_lot, seller, client_for):
    lot = make_lot(ends_at=timezone.now() + timedelta(hours=2))
    earlier = lot.ends_at - timedelta(hours=1)

    response = client_for(seller).patch(f"/api/lots/{lot.pk}/", {"ends_at": _iso(earlier)}, format="json")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_staff_need_a_reason_to_move_the_end_earlier_after_bids(bid_on_lot, staff_user, client_for, reason):
    body = {"ends_at": _iso(bid_on_lot.ends_at - timedelta(minutes=30))}
    if reason is not None:
        body["reason"] = reason

    response = client_for(staff_user).patch(f"/api/lots/{bid_on_lot.pk}/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "reason_required")
    assert Lot.objects.get(pk=bid_on_lot.pk).ends_at == bid_on_lot.ends_at


def test_staff_move_the_end_earlier_with_a_reason_recorded(bid_on_lot, staff_user, client_for):
    earlier = bid_on_lot.ends_at - timedelta(minutes=30)

    response = client_for(staff_user).patch(
        f"/api/lots/{bid_on_lot.pk}/", {"ends_at": _iso(earlier), "reason": "Seller withdrew the item"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert Lot.objects.get(pk=bid_on_lot.pk).ends_at == earlier
    entry = LogEntry.objects.get(object_id=str(bid_on_lot.pk))
    assert entry.user_id == staff_user.pk
    assert "Seller withdrew the item" in entry.change_message
    assert earlier.isoformat() in entry.change_message
    updated = lot_events(bid_on_lot)[-1]
    assert (updated["type"], updated["reason"]) == ("LOT_UPDATED", "Seller withdrew the item")


# --- 14. A lot past its end is never listed as open, even with every clock stopped -----


def _end_passed(lot):
    """Its end passed while no clock ran: the row still says `open`."""
    now = timezone.now()
    Lot.objects.filter(pk=lot.pk).update(
        starts_at=now - timedelta(hours=2), ends_at=now - timedelta(minutes=1), hard_ends_at=now - timedelta(minutes=1)
    )
    assert Lot.objects.get(pk=lot.pk).status == LotStatus.OPEN


def test_ended_lots_are_not_listed_as_open(make_lot, bidder, api_client):
    running = make_lot(title="Running")
    ended = make_lot(title="Ended")
    bid(ended, bidder, "10.00")
    _end_passed(ended)

    open_page = api_client.get("/api/lots/?status=open").json()
    closed_page = api_client.get("/api/lots/?status=closed").json()
    everything = {lot["title"]: lot for lot in api_client.get("/api/lots/").json()["results"]}

    assert ([lot["title"] for lot in open_page["results"]], open_page["count"]) == (["Running"], 1)
    assert [lot["title"] for lot in closed_page["results"]] == ["Ended"]
    assert everything["Ended"]["status"] == "closed"
    assert (everything["Ended"]["winner"], everything["Ended"]["final_price"]) == ("Bidder 1", "10.00")
    assert everything["Running"]["status"] == "open"
    assert Lot.objects.get(pk=running.pk).status == LotStatus.OPEN


def test_won_lists_an_ended_lot_the_user_leads_with_the_reserve_met(make_lot, bidder, other_bidder, client_for):
    won = make_lot(title="Won")
    below_reserve = make_lot(title="Below reserve", reserve_price="50.00")
    outbid = make_lot(title="Outbid")
    for lot in (won, below_reserve):
        bid(lot, bidder, "10.00")
    bid(outbid, bidder, "10.00")
    bid(outbid, other_bidder, "20.00")
    for lot in (won, below_reserve, outbid):
        _end_passed(lot)

    mine = client_for(bidder).get("/api/users/me/won/").json()["results"]
    theirs = client_for(other_bidder).get("/api/users/me/won/").json()["results"]

    assert [(lot["title"], lot["status"], lot["winner"]) for lot in mine] == [("Won", "closed", "Bidder 1")]
    assert [lot["title"] for lot in theirs] == ["Outbid"]


def test_my_bids_show_an_ended_lot_as_closed(make_lot, bidder, client_for):
    lot = make_lot()
    bid(lot, bidder, "10.00")
    _end_passed(lot)

    assert [row["lot_status"] for row in client_for(bidder).get("/api/users/me/bids/").json()["results"]] == ["closed"]


# --- Money input takes one plain format -------------------------------------------------

# Decimal() takes each of these.
NOT_PLAIN_AMOUNTS = [
    "\u0663\u0660",
    "\uff13\uff10",
    "1_000",
    "+15",
    " 20 ",
    "\t20",
    "1e3",
    "20.",
    ".5",
    "20.500",
    "-15",
]


@pytest.mark.parametrize("amount", NOT_PLAIN_AMOUNTS)
def test_bids_take_plain_amounts_only(make_lot, bidder, client_for, amount):
    lot = make_lot()
    client = client_for(bidder)

    for body in ({"amount": amount}, {"amount": "20.00", "max_amount": amount}):
        response = client.post(f"/api/lots/{lot.pk}/bids/", body, format="json")
        assert (response.status_code, response.json()["code"]) == (400, "invalid_amount"), body

    assert Lot.objects.get(pk=lot.pk).bid_count == 0


@pytest.mark.parametrize("amount", NOT_PLAIN_AMOUNTS)
def test_lot_prices_take_plain_amounts_only(seller, client_for, amount):
    body = {"title": "Lamp", "starting_price": amount, "ends_at": (timezone.now() + timedelta(hours=1)).isoformat()}

    response = client_for(seller).post("/api/lots/", body, format="json")

    assert (response.status_code, response.json()["code"]) == (400, "invalid_amount")
    assert not Lot.objects.exists()


@pytest.mark.parametrize(("amount", "stored"), [("30", "30.00"), ("30.5", "30.50"), ("030.05", "30.05"), (30, "30.00")])
def test_plain_amounts_are_taken(make_lot, bidder, client_for, amount, stored):
    lot = make_lot()

    response = client_for(bidder).post(f"/api/lots/{lot.pk}/bids/", {"amount": amount}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["bid"]["amount"] == stored


# --- Who may never bid, said before the bid (issue 19) ------------------------------


@pytest.mark.parametrize(
    ("who", "staff_can_bid", "barred"),
    [
        ("seller", False, "own_lot"),
        ("staff_user", False, "staff_cannot_bid"),
        ("staff_user", True, None),
        ("bidder", False, None),
    ],
)
def test_a_lot_says_who_may_never_bid_on_it_as_the_bid_would_be_refused(
    make_lot, client_for, request, settings, who, staff_can_bid, barred
):
    settings.AUCTION_STAFF_CAN_BID = staff_can_bid
    lot = make_lot()
    user = request.getfixturevalue(who)

    shown = client_for(user).get(f"/api/lots/{lot.pk}/").json()
    refused = client_for(user).post(f"/api/lots/{lot.pk}/bids/", {"amount": "20.00"}, format="json")

    assert shown["bidding_barred"] == barred
    if barred:
        assert refused.json()["code"] == barred
    else:
        assert refused.status_code == 201, refused.content


def test_anonymous_readers_are_barred_from_nothing_and_see_the_sale_s_title(make_lot, api_client, sale):
    lot = make_lot()
    Lot.objects.filter(pk=lot.pk).update(auction=sale)

    shown = api_client.get(f"/api/lots/{lot.pk}/").json()

    assert shown["bidding_barred"] is None
    assert (shown["auction"], shown["auction_title"]) == (sale.slug, sale.title)


def test_my_bids_carry_their_lot_s_currency(make_lot, bidder, client_for):
    lot = make_lot()
    client_for(bidder).post(f"/api/lots/{lot.pk}/bids/", {"amount": "20.00"}, format="json")

    rows = client_for(bidder).get("/api/users/me/bids/").json()["results"]

    assert [(row["amount"], row["currency"]) for row in rows] == [("20.00", lot.currency)]


@pytest.mark.parametrize(("currency", "places"), [("USD", 2), ("JPY", 0)])
def test_a_lot_tells_how_many_decimals_its_currency_takes(make_lot, api_client, currency, places):
    lot = make_lot(currency=currency, starting_price="1000")

    shown = api_client.get(f"/api/lots/{lot.pk}/").json()

    assert (shown["currency"], shown["currency_places"]) == (currency, places)


def test_the_places_follow_the_settings_currency_table(settings, make_lot, api_client):
    settings.AUCTION_CURRENCIES = {"USD": 2, "JPY": 0, "XTS": 1}
    lot = make_lot(currency="XTS", starting_price="5.5")

    assert api_client.get(f"/api/lots/{lot.pk}/").json()["currency_places"] == 1
