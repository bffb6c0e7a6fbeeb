"""What a bid costs the database on PostgreSQL: the statements of its transaction, BEGIN and COMMIT included."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bids.exceptions import BidRejected
from bids.models import Bid
from bids.services import bid_request, place_bids
from lots.models import LotAlias, Notification
from testsupport.bidding import bid, lot_events

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries]


def test_an_accepted_bid_is_five_statements_the_locked_read_the_ids_and_one_write(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    with CaptureQueriesContext(connection) as captured:
        outcome = bid(lot, other_bidder, "11.00", idempotency_key="k-1")

    # The locked read, the ids (with the new bidder's alias read afresh), every row in one WITH.
    assert statements(captured) == ["BEGIN", "SELECT", "SELECT", "WITH", "COMMIT"]
    assert "FOR UPDATE" in captured.captured_queries[1]["sql"]
    # All of it stored: the bid with its id, the alias, the event naming both, the outbid notice.
    stored = Bid.objects.get(pk=outcome.bid.pk)
    assert (stored.bidder_id, stored.amount, stored.idempotency_key) == (other_bidder.pk, outcome.bid.amount, "k-1")
    assert LotAlias.objects.get(lot=lot, user=other_bidder).label == outcome.alias == "Bidder 2"
    new_bid = lot_events(lot)[-1]
    assert (new_bid["seq"], new_bid["bid"]["id"], new_bid["bid"]["bidder"]) == (2, outcome.bid.pk, "Bidder 2")
    assert Notification.objects.get(user=bidder, type="OUTBID").payload["high_bidder"] == "Bidder 2"


def test_a_proxy_answer_is_still_five_statements_and_ids_follow_the_rows(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00", max_amount="50.00")
    bid(lot, other_bidder, "11.00")

    with CaptureQueriesContext(connection) as captured:
        outcome = bid(lot, other_bidder, "12.00")

    assert statements(captured) == ["BEGIN", "SELECT", "SELECT", "WITH", "COMMIT"]
    assert not outcome.leading
    rows = list(Bid.objects.filter(lot=lot).order_by("id").values_list("bidder_id", "amount", "is_proxy"))
    # The challenger's row, then the leader's proxy answer: ids in the order the rules made them.
    assert [(who, str(amount), proxy) for who, amount, proxy in rows[-2:]] == [
        (other_bidder.pk, "12.00", False),
        (bidder.pk, "12.50", True),
    ]
    assert [event["bid"]["id"] for event in lot_events(lot)[-2:]] == [row.pk for row in lot.bids.order_by("id")][-2:]


def test_a_refused_bid_is_the_locked_read_alone_and_a_key_is_looked_up_only_then(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")

    with CaptureQueriesContext(connection) as refused, pytest.raises(BidRejected):
        bid(lot, other_bidder, "10.00")
    with CaptureQueriesContext(connection) as refused_with_key, pytest.raises(BidRejected):
        bid(lot, other_bidder, "10.00", idempotency_key="fresh")

    assert statements(refused) == ["BEGIN", "SELECT", "COMMIT"]
    # The refusal, then the lookup that tells a retry from a new request.
    assert statements(refused_with_key) == ["BEGIN", "SELECT", "COMMIT", "SELECT"]


def test_bids_that_waited_together_share_one_lock_and_one_commit(make_lot, bidder, other_bidder, third_bidder):
    lot = make_lot(starting_price="10.00")
    bid(lot, bidder, "10.00")
    requests = [
        bid_request(lot_id=lot.pk, bidder=user, amount=amount)
        for user, amount in ((other_bidder, "11.00"), (third_bidder, "12.00"), (other_bidder, "13.00"))
    ]

    with CaptureQueriesContext(connection) as captured:
        results = place_bids(lot_id=lot.pk, requests=requests)

    # Three bids, six statements: the bidders besides the first are read once, after the lock.
    assert statements(captured) == ["BEGIN", "SELECT", "SELECT", "SELECT", "WITH", "COMMIT"]
    assert [result.leading for result in results] == [True, True, True]
    assert [e["seq"] for e in lot_events(lot)] == [1, 2, 3, 4]


def test_a_bids_statements_are_prepared_on_their_connection_not_planned_on_every_bid(make_lot, bidder, other_bidder):
    lot = make_lot(starting_price="10.00")
    amount = "10.00"
    # Past psycopg's prepare_threshold (5, settings): from then on each statement runs prepared.
    for turn in range(8):
        amount = bid(lot, (bidder, other_bidder)[turn % 2], amount).lot_state["min_next_bid"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("FOR UPDATE OF lot" in statement for statement in prepared), prepared
    assert any(statement.lstrip().startswith("WITH") for statement in prepared), prepared
