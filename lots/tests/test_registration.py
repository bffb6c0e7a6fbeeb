"""Registration to bid in a sale: paddles, staff decisions, and the bidding rule they gate."""

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services import buy_now
from lots.exceptions import LotActionRefused, NotLotManager
from lots.mailer import send_due_emails
from lots.models import Auction, Lot, LotStatus, Notification, Registration, RegistrationStatus
from lots.services import close_lot, decide_registration, register_for_auction
from ops.exceptions import NotFound
from testsupport.bidding import bid, run_threads
from testsupport.ws import Sockets

pytestmark = pytest.mark.django_db

D = Decimal
PENDING, APPROVED, REJECTED, REVOKED = (
    RegistrationStatus.PENDING,
    RegistrationStatus.APPROVED,
    RegistrationStatus.REJECTED,
    RegistrationStatus.REVOKED,
)


@pytest.fixture
def make_auction():
    counter = iter(range(1, 1000))

    def make(**fields):
        number = next(counter)
        fields.setdefault("title", f"Sale {number}")
        fields.setdefault("slug", f"sale-{number}")
        fields.setdefault("requires_registration", True)
        return Auction.objects.create(**fields)

    return make


@pytest.fixture
def sale(make_auction):
    """A sale that requires registration, approved by staff."""
    return make_auction(slug="spring", requires_registration=True, auto_approve=False)


@pytest.fixture
def sale_lot(make_lot, sale):
    return make_lot(auction=sale, buy_now_price="100.00")


@pytest.fixture
def registered(sale, staff_user):
    """`registered(user, status)`: the user's registration for `sale`, brought to `status` by staff."""

    def make(user, status=APPROVED, auction=None):
        registration = register_for_auction(auction_id=(auction or sale).pk, user=user)
        if status == APPROVED:
            decide_registration(registration_id=registration.pk, actor=staff_user, decision="approve")
        elif status == REJECTED:
            decide_registration(registration_id=registration.pk, actor=staff_user, decision="reject")
        elif status == REVOKED:
            decide_registration(registration_id=registration.pk, actor=staff_user, decision="approve")
            decide_registration(registration_id=registration.pk, actor=staff_user, decision="revoke")
        registration.refresh_from_db()
        assert registration.status == status
        return registration

    return make


def refused_code(func, **kwargs) -> str:
    with pytest.raises(BidRejected) as caught:
        func(**kwargs)
    return caught.value.code


# --- Registering -------------------------------------------------------------------------


def test_registering_gives_a_pending_registration_with_the_next_paddle(sale, bidder, other_bidder):
    first = register_for_auction(auction_id=sale.pk, user=bidder)
    second = register_for_auction(auction_id=sale.pk, user=other_bidder)

    assert (first.paddle_number, first.status, first.decided_at) == (1, PENDING, None)
    assert (second.paddle_number, second.status) == (2, PENDING)


def test_auto_approving_sale_approves_at_once(make_auction, bidder):
    auction = make_auction(requires_registration=True, auto_approve=True)

    registration = register_for_auction(auction_id=auction.pk, user=bidder)

    assert registration.status == APPROVED
    assert registration.decided_at is not None
    assert registration.decided_by is None


def test_sale_without_registration_approves_at_once(make_auction, bidder):
    auction = make_auction(requires_registration=False)

    assert register_for_auction(auction_id=auction.pk, user=bidder).status == APPROVED


def test_registering_again_returns_the_same_registration(sale, bidder):
    first = register_for_auction(auction_id=sale.pk, user=bidder)

    again = register_for_auction(auction_id=sale.pk, user=bidder)

    assert (again.pk, again.paddle_number) == (first.pk, 1)
    assert Registration.objects.filter(auction=sale).count() == 1


def test_registering_again_after_a_rejection_does_not_reopen_it(registered, sale, bidder):
    rejected = registered(bidder, REJECTED)

    again = register_for_auction(auction_id=sale.pk, user=bidder)

    assert (again.pk, again.status) == (rejected.pk, REJECTED)


def test_paddles_are_numbered_per_sale(make_auction, bidder, other_bidder, third_bidder):
    first_sale, second_sale = make_auction(), make_auction()

    register_for_auction(auction_id=first_sale.pk, user=bidder)
    register_for_auction(auction_id=first_sale.pk, user=other_bidder)
    in_second = register_for_auction(auction_id=second_sale.pk, user=third_bidder)
    bidder_in_second = register_for_auction(auction_id=second_sale.pk, user=bidder)

    assert in_second.paddle_number == 1
    assert bidder_in_second.paddle_number == 2
    assert sorted(Registration.objects.filter(auction=first_sale).values_list("paddle_number", flat=True)) == [1, 2]


def test_registering_for_an_unknown_sale(bidder):
    with pytest.raises(NotFound) as caught:
        register_for_auction(auction_id=999_999, user=bidder)

    assert caught.value.code == "auction_not_found"


def test_database_keeps_a_paddle_unique_in_its_sale(sale, bidder, other_bidder):
    Registration.objects.create(auction=sale, user=bidder, paddle_number=7)

    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(auction=sale, user=other_bidder, paddle_number=7)


def test_database_keeps_one_registration_per_user_and_sale(sale, bidder):
    Registration.objects.create(auction=sale, user=bidder, paddle_number=1)

    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(auction=sale, user=bidder, paddle_number=2)


# --- Staff decisions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "decision", "result"),
    [
        (PENDING, "approve", APPROVED),
        (PENDING, "reject", REJECTED),
        (APPROVED, "revoke", REVOKED),
        (REJECTED, "approve", APPROVED),
        (REVOKED, "approve", APPROVED),
    ],
)
def test_staff_decide_a_registration(registered, bidder, staff_user, start, decision, result):
    registration = registered(bidder, start)

    decided = decide_registration(registration_id=registration.pk, actor=staff_user, decision=decision)

    registration.refresh_from_db()
    assert decided.status == registration.status == result
    assert registration.decided_by == staff_user
    assert registration.decided_at is not None
    assert registration.paddle_number == 1


def test_the_participant_is_told_of_each_decision_at_once_and_by_email(
    registered, bidder, staff_user, inbox, django_capture_on_commit_callbacks, mailoutbox
):
    registration = registered(bidder, PENDING)
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True):
        decide_registration(registration_id=registration.pk, actor=staff_user, decision="approve")
    with django_capture_on_commit_callbacks(execute=True):
        decide_registration(registration_id=registration.pk, actor=staff_user, decision="revoke")

    pushed = inbox.user_messages(bidder)
    assert [(m["type"], m["auction"], m["status"], m["paddle_number"]) for m in pushed] == [
        ("REGISTRATION_DECIDED", "spring", "approved", 1),
        ("REGISTRATION_DECIDED", "spring", "revoked", 1),
    ]
    stored = Notification.objects.filter(user=bidder, type="REGISTRATION_DECIDED").order_by("id")
    assert [n.payload["status"] for n in stored] == ["approved", "revoked"]
    send_due_emails()
    approved_mail = next(mail for mail in mailoutbox if "is now approved" in mail.body)
    assert approved_mail.to == [bidder.email]
    assert approved_mail.subject == f"Your registration for {registration.auction.title}"
    assert "You can bid in this sale." in approved_mail.body
    assert "/auctions/spring/" in approved_mail.body


@pytest.mark.parametrize(
    ("start", "decision"),
    [
        (PENDING, "revoke"),
        (APPROVED, "approve"),
        (APPROVED, "reject"),
        (REJECTED, "reject"),
        (REJECTED, "revoke"),
        (REVOKED, "revoke"),
        (REVOKED, "reject"),
    ],
)
def test_decision_that_does_not_apply_is_an_invalid_transition(registered, bidder, staff_user, start, decision):
    registration = registered(bidder, start)

    with pytest.raises(LotActionRefused) as caught:
        decide_registration(registration_id=registration.pk, actor=staff_user, decision=decision)

    assert caught.value.code == "invalid_transition"
    registration.refresh_from_db()
    assert registration.status == start


def test_only_staff_decide(sale, bidder, seller):
    registration = register_for_auction(auction_id=sale.pk, user=bidder)

    for actor in (bidder, seller):
        with pytest.raises(NotLotManager) as caught:
            decide_registration(registration_id=registration.pk, actor=actor, decision="approve")
        assert caught.value.code == "not_staff"
    registration.refresh_from_db()
    assert registration.status == PENDING


def test_deciding_an_unknown_registration(staff_user):
    with pytest.raises(NotFound) as caught:
        decide_registration(registration_id=999_999, actor=staff_user, decision="approve")

    assert caught.value.code == "registration_not_found"


# --- The bidding rule ---------------------------------------------------------------------


def test_unregistered_bidder_is_refused(sale_lot, bidder):
    assert refused_code(bid, lot=sale_lot, user=bidder, amount="10.00") == "not_registered"
    assert refused_code(buy_now, lot_id=sale_lot.pk, buyer=bidder) == "not_registered"
    assert not Bid.objects.filter(lot=sale_lot).exists()


@pytest.mark.parametrize(
    ("status", "code"), [(PENDING, "registration_pending"), (REJECTED, "not_registered"), (REVOKED, "not_registered")]
)
def test_bidder_not_approved_is_refused_bids_and_buy_now(registered, sale_lot, bidder, status, code):
    registered(bidder, status)

    assert refused_code(bid, lot=sale_lot, user=bidder, amount="10.00") == code
    assert refused_code(buy_now, lot_id=sale_lot.pk, buyer=bidder) == code

    lot = Lot.objects.get(pk=sale_lot.pk)
    assert (lot.status, lot.bid_count, lot.current_price, lot.seq) == (LotStatus.OPEN, 0, None, 0)
    assert not Bid.objects.filter(lot=sale_lot).exists()


def test_approved_bidder_may_bid_and_buy_now(registered, sale_lot, bidder, other_bidder):
    registered(bidder)
    registered(other_bidder)

    outcome = bid(sale_lot, bidder, "10.00")
    bought = buy_now(lot_id=sale_lot.pk, buyer=other_bidder)

    assert outcome.leading
    assert bought.lot.winner == other_bidder


def test_registration_for_another_sale_does_not_count(registered, make_auction, sale_lot, bidder):
    other_sale = make_auction()
    registered(bidder, APPROVED, auction=other_sale)

    assert refused_code(bid, lot=sale_lot, user=bidder, amount="10.00") == "not_registered"


@pytest.mark.parametrize("in_sale", [False, True])
def test_lots_outside_a_registration_sale_need_no_registration(make_lot, make_auction, bidder, in_sale):
    lot = make_lot(auction=make_auction(requires_registration=False) if in_sale else None)

    assert bid(lot, bidder, "10.00").leading


def test_revoked_bidder_keeps_earlier_bids_but_cannot_bid_again(
    registered, sale_lot, bidder, other_bidder, staff_user, seller
):
    registration = registered(bidder)
    registered(other_bidder)
    first = bid(sale_lot, bidder, "10.00").bid
    bid(sale_lot, other_bidder, "12.00")
    bid(sale_lot, bidder, "14.00")

    decide_registration(registration_id=registration.pk, actor=staff_user, decision="revoke")

    assert refused_code(bid, lot=sale_lot, user=bidder, amount="20.00") == "not_registered"
    assert refused_code(buy_now, lot_id=sale_lot.pk, buyer=bidder) == "not_registered"
    assert Bid.objects.filter(lot=sale_lot, bidder=bidder).count() == 2
    assert Bid.objects.filter(pk=first.pk).exists()
    lot = Lot.objects.get(pk=sale_lot.pk)
    assert (lot.high_bidder, lot.current_price, lot.bid_count) == (bidder, D("14.00"), 3)
    # Their standing bid still wins the lot.
    closed = close_lot(lot_id=sale_lot.pk, actor=seller)
    assert (closed.winner, closed.final_price) == (bidder, D("14.00"))


def test_revoked_bidder_approved_again_may_bid_again(registered, sale_lot, bidder, staff_user):
    registration = registered(bidder, REVOKED)

    decide_registration(registration_id=registration.pk, actor=staff_user, decision="approve")

    assert bid(sale_lot, bidder, "10.00").leading


# --- REST: registering and your registrations ----------------------------------------------


def test_register_over_rest(sale, bidder, client_for):
    response = client_for(bidder).post("/api/auctions/spring/register/")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["auction"], body["user"], body["paddle_number"], body["status"]) == ("spring", "alice", 1, "pending")
    assert Registration.objects.get(auction=sale, user=bidder).pk == body["id"]


def test_register_over_rest_in_an_auto_approving_sale(make_auction, bidder, client_for):
    make_auction(slug="quick", auto_approve=True)

    response = client_for(bidder).post("/api/auctions/quick/register/")

    assert response.status_code == 201
    assert response.json()["status"] == "approved"


def test_register_over_rest_twice_keeps_the_paddle(sale, bidder, other_bidder, client_for):
    client_for(other_bidder).post("/api/auctions/spring/register/")
    first = client_for(bidder).post("/api/auctions/spring/register/").json()

    again = client_for(bidder).post("/api/auctions/spring/register/")

    assert again.status_code in (200, 201)
    assert (again.json()["id"], again.json()["paddle_number"]) == (first["id"], 2)
    assert Registration.objects.filter(auction=sale).count() == 2


def test_register_needs_a_login_and_a_known_sale(sale, bidder, api_client, client_for):
    assert api_client.post("/api/auctions/spring/register/").status_code == 401

    response = client_for(bidder).post("/api/auctions/no-such-sale/register/")

    assert response.status_code == 404
    assert response.json()["code"] == "auction_not_found"
    assert not Registration.objects.exists()


def test_my_registrations_lists_only_mine(registered, make_auction, sale, bidder, other_bidder, client_for):
    other_sale = make_auction(slug="autumn")
    registered(bidder, PENDING)
    registered(bidder, APPROVED, auction=other_sale)
    registered(other_bidder, APPROVED)

    response = client_for(bidder).get("/api/users/me/registrations/")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert {(row["auction"], row["user"], row["status"]) for row in rows} == {
        ("spring", "alice", "pending"),
        ("autumn", "alice", "approved"),
    }
    assert response.json()["count"] == 2


def test_my_registrations_needs_a_login(api_client):
    assert api_client.get("/api/users/me/registrations/").status_code == 401


@pytest.mark.parametrize(
    ("auction_fields", "expected"),
    [(None, False), ({"requires_registration": False}, False), ({"requires_registration": True}, True)],
)
def test_lot_representation_tells_whether_registration_is_required(
    make_lot, make_auction, api_client, auction_fields, expected
):
    lot = make_lot(auction=make_auction(**auction_fields) if auction_fields is not None else None)

    detail = api_client.get(f"/api/lots/{lot.pk}/").json()
    [listed] = [row for row in api_client.get("/api/lots/").json()["results"] if row["id"] == lot.pk]

    assert detail["requires_registration"] is expected
    assert listed["requires_registration"] is expected


# --- REST: staff manage participants -------------------------------------------------------


def test_staff_list_the_participants_by_paddle(
    registered, sale, bidder, other_bidder, third_bidder, client_for, staff_user, make_auction
):
    registered(other_bidder, PENDING)
    registered(bidder, APPROVED)
    registered(third_bidder, APPROVED, auction=make_auction(slug="elsewhere"))

    response = client_for(staff_user).get("/api/auctions/spring/participants/")

    assert response.status_code == 200
    assert [(row["paddle_number"], row["user"], row["status"]) for row in response.json()["results"]] == [
        (1, "bob", "pending"),
        (2, "alice", "approved"),
    ]


def test_participants_are_for_staff_only(registered, bidder, seller, api_client, client_for, staff_user):
    registered(bidder, PENDING)

    assert api_client.get("/api/auctions/spring/participants/").status_code == 401
    assert client_for(bidder).get("/api/auctions/spring/participants/").status_code == 403
    assert client_for(seller).get("/api/auctions/spring/participants/").status_code == 403
    unknown = client_for(staff_user).get("/api/auctions/no-such-sale/participants/")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "auction_not_found")


@pytest.mark.parametrize(
    ("start", "decision", "result"),
    [(PENDING, "approve", "approved"), (PENDING, "reject", "rejected"), (APPROVED, "revoke", "revoked")],
)
def test_staff_decide_over_rest(registered, bidder, client_for, staff_user, start, decision, result):
    registration = registered(bidder, start)

    response = client_for(staff_user).post(f"/api/auctions/spring/participants/{registration.pk}/{decision}/")

    assert response.status_code == 200, response.content
    assert (response.json()["id"], response.json()["status"]) == (registration.pk, result)
    registration.refresh_from_db()
    assert (registration.status, registration.decided_by) == (result, staff_user)


@pytest.mark.parametrize("decision", ["approve", "reject", "revoke"])
def test_only_staff_decide_over_rest(registered, bidder, seller, api_client, client_for, decision):
    registration = registered(bidder, PENDING if decision != "revoke" else APPROVED)
    before = registration.status
    path = f"/api/auctions/spring/participants/{registration.pk}/{decision}/"

    assert api_client.post(path).status_code == 401
    assert client_for(bidder).post(path).status_code == 403
    assert client_for(seller).post(path).status_code == 403
    registration.refresh_from_db()
    assert registration.status == before


def test_decision_over_rest_on_a_registration_of_another_sale(registered, make_auction, bidder, client_for, staff_user):
    registration = registered(bidder, PENDING, auction=make_auction(slug="autumn"))
    make_auction(slug="winter")

    response = client_for(staff_user).post(f"/api/auctions/winter/participants/{registration.pk}/approve/")

    assert (response.status_code, response.json()["code"]) == (404, "registration_not_found")
    registration.refresh_from_db()
    assert registration.status == PENDING


def test_invalid_transition_over_rest(registered, bidder, client_for, staff_user):
    registration = registered(bidder, PENDING)

    response = client_for(staff_user).post(f"/api/auctions/spring/participants/{registration.pk}/revoke/")

    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")


# --- REST: bidding gated by registration ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (None, "not_registered"),
        (PENDING, "registration_pending"),
        (REJECTED, "not_registered"),
        (REVOKED, "not_registered"),
    ],
)
def test_rest_bid_and_buy_now_refused_until_approved(registered, sale_lot, bidder, client_for, status, code):
    if status is not None:
        registered(bidder, status)
    client = client_for(bidder)

    bid_response = client.post(f"/api/lots/{sale_lot.pk}/bids/", {"amount": "10.00"}, format="json")
    buy_response = client.post(f"/api/lots/{sale_lot.pk}/buy-now/")

    assert (bid_response.status_code, bid_response.json()["code"]) == (409, code)
    assert (buy_response.status_code, buy_response.json()["code"]) == (409, code)
    assert not Bid.objects.filter(lot=sale_lot).exists()


def test_rest_revoked_bidder_keeps_earlier_bids(registered, sale_lot, bidder, other_bidder, client_for, staff_user):
    registration = registered(bidder)
    registered(other_bidder)
    assert (
        client_for(bidder).post(f"/api/lots/{sale_lot.pk}/bids/", {"amount": "10.00"}, format="json").status_code == 201
    )
    staff = client_for(staff_user)
    assert staff.post(f"/api/auctions/spring/participants/{registration.pk}/revoke/").status_code == 200

    refused = client_for(bidder).post(f"/api/lots/{sale_lot.pk}/bids/", {"amount": "20.00"}, format="json")
    accepted = client_for(other_bidder).post(f"/api/lots/{sale_lot.pk}/bids/", {"amount": "11.00"}, format="json")

    assert (refused.status_code, refused.json()["code"]) == (409, "not_registered")
    assert accepted.status_code == 201
    history = client_for(other_bidder).get(f"/api/lots/{sale_lot.pk}/bids/").json()["results"]
    assert [(row["bidder"], row["amount"]) for row in history] == [("Paddle 2", "11.00"), ("Paddle 1", "10.00")]


def test_rest_approved_bidder_bids(registered, sale_lot, bidder, client_for):
    registered(bidder)

    response = client_for(bidder).post(f"/api/lots/{sale_lot.pk}/bids/", {"amount": "10.00"}, format="json")

    assert response.status_code == 201
    assert response.json()["leading"] is True
    # Named by the paddle of the sale's registration.
    assert response.json()["bid"]["bidder"].startswith("Paddle ")


# --- Admin bulk actions --------------------------------------------------------------------

CHANGELIST = "/admin/lots/registration/"


@pytest.fixture
def admin_client_for_staff(client, staff_user):
    client.force_login(staff_user)
    return client


def run_action(client, action: str, registrations):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [r.pk for r in registrations]}, follow=True)


def test_admin_approves_pending_registrations_in_bulk(
    registered, admin_client_for_staff, bidder, other_bidder, third_bidder, staff_user
):
    chosen = [registered(bidder, PENDING), registered(other_bidder, PENDING)]
    left = registered(third_bidder, PENDING)

    response = run_action(admin_client_for_staff, "approve", chosen)

    assert response.status_code == 200
    assert "Approved 2 registration(s)." in response.content.decode()
    for registration in chosen:
        registration.refresh_from_db()
        assert (registration.status, registration.decided_by) == (APPROVED, staff_user)
    left.refresh_from_db()
    assert left.status == PENDING


def test_admin_rejects_in_bulk(registered, admin_client_for_staff, bidder, other_bidder):
    chosen = [registered(bidder, PENDING), registered(other_bidder, PENDING)]

    response = run_action(admin_client_for_staff, "reject", chosen)

    assert "Rejected 2 registration(s)." in response.content.decode()
    assert set(Registration.objects.values_list("status", flat=True)) == {REJECTED}


def test_admin_revokes_and_reports_what_could_not_be(
    registered, admin_client_for_staff, sale_lot, bidder, other_bidder
):
    approved = registered(bidder, APPROVED)
    pending = registered(other_bidder, PENDING)

    response = run_action(admin_client_for_staff, "revoke", [approved, pending])

    content = response.content.decode()
    assert "Revoked 1 registration(s)." in content
    assert f"Registration {pending.pk}:" in content
    approved.refresh_from_db()
    pending.refresh_from_db()
    assert (approved.status, pending.status) == (REVOKED, PENDING)
    assert refused_code(bid, lot=sale_lot, user=bidder, amount="10.00") == "not_registered"


def test_admin_actions_need_staff(registered, client, bidder):
    registration = registered(bidder, PENDING)
    client.force_login(bidder)

    response = client.post(CHANGELIST, {"action": "approve", "_selected_action": [registration.pk]})

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    registration.refresh_from_db()
    assert registration.status == PENDING


def test_admin_lists_registrations_with_paddles(registered, admin_client_for_staff, bidder):
    registered(bidder, PENDING)

    response = admin_client_for_staff.get(CHANGELIST)

    assert response.status_code == 200
    assert b"alice" in response.content
    assert "Approve selected registrations" in response.content.decode()


# --- WebSocket: LOT_STATUS and bidding ------------------------------------------------------


@pytest.fixture
async def ws():
    async with Sockets() as sockets:
        yield sockets


@sync_to_async
def registered_async(auction, user, status, staff):
    registration = register_for_auction(auction_id=auction.pk, user=user)
    for decision in {APPROVED: ["approve"], REJECTED: ["reject"], REVOKED: ["approve", "revoke"]}.get(status, []):
        decide_registration(registration_id=registration.pk, actor=staff, decision=decision)
    return registration


@sync_to_async
def bids_on(lot) -> list[tuple[str, Decimal]]:
    return [(b.bidder.username, b.amount) for b in Bid.objects.filter(lot=lot).select_related("bidder").order_by("id")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [None, PENDING, APPROVED, REVOKED])
async def test_lot_status_tells_the_bidder_their_registration(ws, sale, bidder, staff_user, make_lot, status):
    lot = await sync_to_async(make_lot)(auction=sale)
    if status is not None:
        await registered_async(sale, bidder, status, staff_user)

    _, lot_status = await ws.watch(lot, bidder)

    assert lot_status["lot"]["requires_registration"] is True
    if status is None:
        assert lot_status["registration"] is None
    else:
        registration = lot_status["registration"]
        assert (registration["status"], registration["paddle_number"], registration["user"]) == (status, 1, "alice")
        assert registration["auction"] == "spring"


@pytest.mark.django_db(transaction=True)
async def test_lot_status_shows_nobody_elses_registration(ws, sale, bidder, other_bidder, staff_user, make_lot):
    lot = await sync_to_async(make_lot)(auction=sale)
    await registered_async(sale, bidder, APPROVED, staff_user)

    _, anonymous_status = await ws.watch(lot)
    _, other_status = await ws.watch(lot, other_bidder)

    assert anonymous_status["registration"] is None
    assert other_status["registration"] is None
    assert anonymous_status["lot"]["requires_registration"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (None, "not_registered"),
        (PENDING, "registration_pending"),
        (REJECTED, "not_registered"),
        (REVOKED, "not_registered"),
    ],
)
async def test_ws_bid_and_buy_now_refused_until_approved(ws, sale, bidder, staff_user, make_lot, status, code):
    lot = await sync_to_async(make_lot)(auction=sale, buy_now_price="100.00")
    if status is not None:
        await registered_async(sale, bidder, status, staff_user)
    socket, _ = await ws.watch(lot, bidder)

    bid_reply = await socket.request({"type": "NEW_BID", "amount": "10.00", "request_id": "b1"})
    buy_reply = await socket.request({"type": "BUY_NOW", "request_id": "b2"})

    assert (bid_reply["type"], bid_reply["code"], bid_reply["request_id"]) == ("BID_REJECTED", code, "b1")
    assert (buy_reply["type"], buy_reply["code"], buy_reply["request_id"]) == ("BID_REJECTED", code, "b2")
    await socket.assert_silent()
    assert await bids_on(lot) == []


@pytest.mark.django_db(transaction=True)
async def test_ws_revoked_bidder_keeps_earlier_bids_and_is_refused_new_ones(
    ws, sale, bidder, other_bidder, staff_user, make_lot
):
    lot = await sync_to_async(make_lot)(auction=sale)
    registration = await registered_async(sale, bidder, APPROVED, staff_user)
    await registered_async(sale, other_bidder, APPROVED, staff_user)
    socket, _ = await ws.watch(lot, bidder)
    accepted = await socket.request({"type": "NEW_BID", "amount": "10.00", "request_id": "first"})
    assert (accepted["type"], accepted["leading"]) == ("BID_ACCEPTED", True)
    assert (await socket.next())["type"] == "NEW_BID"

    await sync_to_async(decide_registration)(registration_id=registration.pk, actor=staff_user, decision="revoke")
    refused = await socket.request({"type": "NEW_BID", "amount": "20.00", "request_id": "second"})
    other, _ = await ws.watch(lot, other_bidder)
    outbid = await other.request({"type": "NEW_BID", "amount": "11.00"})

    assert (refused["type"], refused["code"]) == ("BID_REJECTED", "not_registered")
    assert outbid["type"] == "BID_ACCEPTED"
    assert await bids_on(lot) == [("alice", D("10.00")), ("bob", D("11.00"))]


# --- Concurrency (PostgreSQL) ----------------------------------------------------------------

THREADS = 30


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_get_distinct_paddles(make_auction, make_user):
    auction = make_auction(slug="rush")
    users = [make_user(f"rush{n}") for n in range(THREADS)]

    results = run_threads(lambda user: register_for_auction(auction_id=auction.pk, user=user), [(u,) for u in users])

    assert [r for r in results if isinstance(r, Exception)] == []
    paddles = list(Registration.objects.filter(auction=auction).values_list("paddle_number", flat=True))
    assert sorted(paddles) == list(range(1, THREADS + 1))
    assert sorted(r.paddle_number for r in results) == list(range(1, THREADS + 1))
    assert Registration.objects.filter(auction=auction).values("user").distinct().count() == THREADS


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_of_one_user_make_one(make_auction, bidder, other_bidder):
    auction = make_auction(slug="double-click")
    register_for_auction(auction_id=auction.pk, user=other_bidder)

    results = run_threads(lambda: register_for_auction(auction_id=auction.pk, user=bidder), [()] * 10)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert {(r.pk, r.paddle_number) for r in results} == {(results[0].pk, 2)}
    assert Registration.objects.filter(auction=auction, user=bidder).count() == 1
