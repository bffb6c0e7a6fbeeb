"""Staff voiding a bidder's bids: the lot's other bids are replayed without them."""

import contextlib
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bids.exceptions import BidRejected
from bids.models import Bid, VoidReason
from bids.services import void_bids
from lots.events import lot_min_next_bid
from lots.exceptions import LotActionRefused, NotLotManager
from lots.mailer import send_due_emails
from lots.models import Auction, LotStatus, Notification
from lots.services import close_lot, decide_registration, register_for_auction
from testsupport.bidding import bid, lot_events, public_bids

pytestmark = pytest.mark.django_db

D = Decimal


def state(lot) -> tuple:
    lot.refresh_from_db()
    leader = lot.high_bidder.username if lot.high_bidder_id else None
    return lot.current_price, leader, lot.high_max_amount, lot.bid_count


@pytest.fixture
def lot(make_lot):
    return make_lot(starting_price="10.00", bid_increment="1.00")


def test_voiding_a_bidder_replays_the_others_without_them(lot, bidder, other_bidder, third_bidder, staff_user):
    alice, bob, carol = bidder, other_bidder, third_bidder
    bid(lot, bob, "12.00", max_amount="40.00")
    bid(lot, alice, "20.00", max_amount="100.00")  # bob's proxy bids 40, alice leads at 41
    carol_bid = bid(lot, carol, "45.00", idempotency_key="carol-1").bid  # alice's proxy answers 46
    assert state(lot) == (D("46.00"), "alice", D("100.00"), 5)

    assert void_bids(lot_id=lot.pk, bidder_id=alice.pk, actor=staff_user) == 2

    # Without alice, carol's 45 beats bob's 40 maximum: what bob and carol would have paid.
    assert state(lot) == (D("45.00"), "carol", D("45.00"), 3)
    assert public_bids(lot) == [("bob", D("12.00"), False), ("bob", D("40.00"), True), ("carol", D("45.00"), False)]
    assert set(Bid.objects.filter(bidder=alice).values_list("void_reason", flat=True)) == {VoidReason.VOIDED}
    carol_bid.refresh_from_db()
    assert carol_bid.void_reason == VoidReason.SUPERSEDED
    assert carol_bid.voided_by == staff_user
    # Bob's bid before alice's first one stands untouched; the rest are new rows.
    standing = Bid.objects.filter(lot=lot, void_reason="").order_by("id")
    assert standing[0].pk < carol_bid.pk < standing[1].pk


def test_watchers_and_the_voided_bidder_are_told(
    lot, bidder, other_bidder, staff_user, inbox, django_capture_on_commit_callbacks, mailoutbox
):
    bid(lot, other_bidder, "12.00")
    bid(lot, bidder, "15.00")
    seq_before = lot_events(lot)[-1]["seq"]
    inbox.watch_lot(lot)
    inbox.watch_user(bidder)

    with django_capture_on_commit_callbacks(execute=True):
        void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    event = lot_events(lot)[-1]
    assert event["type"] == "BIDS_VOIDED"
    assert event["seq"] == seq_before + 1
    # By alias: bob bid first, alice second.
    assert event["bidder"] == "Bidder 2"
    assert event["voided"] == 1
    assert event["lot"]["current_price"] == "12.00"
    assert event["lot"]["high_bidder"] == "Bidder 1"
    assert event["lot"]["min_next_bid"] == "13.00"
    [message] = inbox.lot_messages(lot)
    assert message["seq"] == event["seq"]
    assert json.loads(message["text"]) == event
    notice = Notification.objects.get(user=bidder, type="BIDS_VOIDED")
    assert notice.payload == {"lot_id": lot.pk, "title": lot.title, "voided": 1}
    assert inbox.user_types(bidder) == ["BIDS_VOIDED"]
    send_due_emails()
    voided_mail = [mail for mail in mailoutbox if mail.to == ["alice@example.com"]][-1]
    assert voided_mail.subject == "Your bids on Art deco lamp were voided"
    assert 'Staff voided your 1 bid(s) on "Art deco lamp"' in voided_mail.body


def test_voiding_the_only_bidder_leaves_a_lot_without_bids(lot, bidder, staff_user):
    bid(lot, bidder, "10.00", max_amount="30.00")
    bid(lot, bidder, "10.00", max_amount="50.00")  # a private raise

    assert void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user) == 2

    assert state(lot) == (None, None, None, 0)
    assert public_bids(lot) == []
    # The next bid starts again from the starting price.
    assert bid(lot, bidder, "10.00").lot.current_price == D("10.00")


def test_a_reserve_met_only_by_the_voided_bidder_is_unmet_again(make_lot, bidder, other_bidder, staff_user):
    lot = make_lot(starting_price="10.00", bid_increment="1.00", reserve_price="50.00")
    bid(lot, other_bidder, "10.00", max_amount="30.00")
    bid(lot, bidder, "20.00", max_amount="80.00")  # meets the reserve: the price jumps to 50
    assert state(lot)[:2] == (D("50.00"), "alice")

    void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    assert state(lot) == (D("10.00"), "bob", D("30.00"), 1)
    lot.refresh_from_db()
    assert not lot.reserve_met


def test_a_later_bid_by_the_new_leader_becomes_a_private_raise(lot, bidder, other_bidder, staff_user):
    bid(lot, other_bidder, "20.00", max_amount="50.00")
    bid(lot, bidder, "60.00")  # bob's proxy bids 50, alice leads at 60
    bid(lot, other_bidder, "65.00")  # bob takes the lead back

    void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    # Bob's 65 now comes while he leads: it only raises his hidden maximum.
    assert state(lot) == (D("20.00"), "bob", D("65.00"), 1)
    assert public_bids(lot) == [("bob", D("20.00"), False)]


def test_a_retried_key_returns_the_replacement_bid(lot, bidder, other_bidder, third_bidder, staff_user):
    bid(lot, bidder, "20.00")
    bid(lot, other_bidder, "30.00", idempotency_key="bob-1")
    void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    retry = bid(lot, other_bidder, "30.00", idempotency_key="bob-1")

    assert retry.replayed
    assert retry.bid.void_reason == ""
    assert retry.bid.amount == D("30.00")
    assert Bid.objects.filter(bidder=other_bidder, void_reason="").count() == 1


def test_nothing_to_void_changes_nothing(lot, bidder, other_bidder, staff_user):
    bid(lot, other_bidder, "12.00")
    events_before = len(lot_events(lot))

    assert void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user) == 0

    assert state(lot) == (D("12.00"), "bob", D("12.00"), 1)
    assert len(lot_events(lot)) == events_before


def test_only_staff_void_bids(lot, bidder, other_bidder, seller):
    bid(lot, bidder, "12.00")
    for actor in (seller, other_bidder):
        with pytest.raises(NotLotManager) as refused:
            void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=actor)
        assert refused.value.code == "not_staff"
    assert state(lot)[1] == "alice"


def test_a_closed_lot_keeps_its_result(lot, bidder, staff_user):
    bid(lot, bidder, "12.00")
    close_lot(lot_id=lot.pk, actor=staff_user)

    with pytest.raises(LotActionRefused) as refused:
        void_bids(lot_id=lot.pk, bidder_id=bidder.pk, actor=staff_user)

    assert refused.value.code == "lot_not_open"
    lot.refresh_from_db()
    assert lot.status == LotStatus.CLOSED
    assert lot.winner == bidder


# --- A sale's revoked participant, over REST and in the admin ---------------------------------


@pytest.fixture
def sale():
    return Auction.objects.create(title="Spring sale", slug="spring", requires_registration=True)


def _approved(user, sale, staff_user):
    registration = register_for_auction(auction_id=sale.pk, user=user)
    return decide_registration(registration_id=registration.pk, actor=staff_user, decision="approve")


def _revoked_participant_with_bids(make_lot, sale, bidder, other_bidder, staff_user):
    first = make_lot(auction=sale, title="First", bid_increment="1.00")
    second = make_lot(auction=sale, title="Second", bid_increment="1.00")
    closed = make_lot(auction=sale, title="Closed", bid_increment="1.00")
    registration = _approved(bidder, sale, staff_user)
    _approved(other_bidder, sale, staff_user)
    for lot in (first, second, closed):
        bid(lot, other_bidder, "10.00")
        bid(lot, bidder, "11.00")
    close_lot(lot_id=closed.pk, actor=staff_user)
    decide_registration(registration_id=registration.pk, actor=staff_user, decision="revoke")
    return registration, first, second, closed


def test_staff_void_a_revoked_participants_bids_over_rest(make_lot, sale, bidder, other_bidder, staff_user, client_for):
    registration, first, second, closed = _revoked_participant_with_bids(
        make_lot, sale, bidder, other_bidder, staff_user
    )
    assert registration.user == bidder
    url = f"/api/auctions/spring/participants/{registration.pk}/void-bids/"

    refused = client_for(other_bidder).post(url)
    assert refused.status_code == 403
    assert state(first)[1] == "alice"

    response = client_for(staff_user).post(url)

    assert response.status_code == 200, response.content
    assert response.json() == {"lots": [{"lot": first.pk, "voided": 1}, {"lot": second.pk, "voided": 1}]}
    assert state(first) == (D("10.00"), "bob", D("10.00"), 1)
    assert state(second) == (D("10.00"), "bob", D("10.00"), 1)
    # The closed lot's result stands.
    assert state(closed)[1] == "alice"
    closed.refresh_from_db()
    assert closed.winner == bidder
    # Voiding again finds nothing standing.
    assert client_for(staff_user).post(url).json() == {"lots": []}
    # The public history no longer shows the voided bids; the bidder still sees them, marked.
    history = client_for(other_bidder).get(f"/api/lots/{first.pk}/bids/").json()
    assert [row["bidder"] for row in history["results"]] == ["Paddle 2"]  # bob's paddle
    mine = client_for(bidder).get("/api/users/me/bids/").json()["results"]
    assert {(row["lot"], row["void_reason"]) for row in mine} == {
        (first.pk, "voided"),
        (second.pk, "voided"),
        (closed.pk, ""),
    }


def test_void_bids_of_an_unknown_participant_is_404(sale, staff_user, client_for):
    response = client_for(staff_user).post("/api/auctions/spring/participants/999/void-bids/")

    assert response.status_code == 404
    assert response.json()["code"] == "registration_not_found"


def test_the_admin_action_voids_a_participants_bids(make_lot, sale, bidder, other_bidder, staff_user, client):
    registration, first, _second, _closed = _revoked_participant_with_bids(
        make_lot, sale, bidder, other_bidder, staff_user
    )
    client.force_login(staff_user)

    response = client.post(
        "/admin/lots/registration/",
        {"action": "void_bids", "_selected_action": [registration.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Voided the bids of alice" in response.content.decode()
    assert state(first)[1] == "bob"


# --- The replay is exact: voiding equals never having bid -------------------------------------

BIDDERS = ("alice", "bob", "carol")
submission = st.tuples(
    st.sampled_from(BIDDERS),
    st.integers(min_value=0, max_value=30),  # amount above the minimum next bid
    st.one_of(st.none(), st.integers(min_value=0, max_value=60)),  # maximum above the amount
)


# No wall-clock limit of Hypothesis's may fail it on a busy machine: deadline off, too_slow suppressed.
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(submissions=st.lists(submission, min_size=1, max_size=12))
def test_voiding_a_bidder_equals_a_lot_where_they_never_bid(
    submissions, make_lot, make_user, staff_user, django_user_model
):
    users = {
        name: django_user_model.objects.get_or_create(username=f"h-{name}", email=f"h-{name}@example.com")[0]
        for name in BIDDERS
    }
    with_alice = make_lot(title="With alice", starting_price="10.00", reserve_price="40.00")
    without_alice = make_lot(title="Never alice", starting_price="10.00", reserve_price="40.00")

    def place(lot, name, above, extra_max):
        lot.refresh_from_db()
        amount = lot_min_next_bid(lot) + above
        maximum = None if extra_max is None else amount + extra_max
        with contextlib.suppress(BidRejected):
            bid(lot, users[name], str(amount), None if maximum is None else str(maximum))

    # Bids are placed at the same amounts on both lots, computed from the lot with alice;
    # the lot without her then gets exactly the submissions the replay keeps.
    for name, above, extra_max in submissions:
        place(with_alice, name, above, extra_max)
    for row in Bid.objects.filter(lot=with_alice, is_proxy=False).order_by("id"):
        if row.bidder.username != "h-alice":
            ceiling = row.max_amount if row.max_amount is not None else row.submitted_amount
            with contextlib.suppress(BidRejected):
                bid(without_alice, row.bidder, str(row.submitted_amount), str(ceiling))

    void_bids(lot_id=with_alice.pk, bidder_id=users["alice"].pk, actor=staff_user)

    assert state(with_alice) == state(without_alice)
    assert public_bids(with_alice) == public_bids(without_alice)
