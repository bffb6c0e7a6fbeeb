"""Bidders appear to the public by an alias on the lot, never by username.

"Paddle N" for a bidder registered in the lot's sale, else "Bidder N" (the
Nth to bid on the lot), fixed at their first bid. The bidder is told which
alias is theirs; the seller sees the winner's username after the close; staff
see every username (REST).
"""

import json

import pytest
from channels.db import database_sync_to_async

from bids.services import void_bids
from lots.models import Auction, LotAlias
from lots.services import close_lot, register_for_auction
from testsupport.bidding import bid, lot_events

pytestmark = pytest.mark.django_db

USERNAMES = ("alice", "bob", "carol")


def names_nobody(body: object) -> bool:
    text = json.dumps(body)
    return not any(f'"{name}"' in text for name in USERNAMES)


@pytest.fixture
def contested(make_lot, bidder, other_bidder):
    """alice bids first, bob second, alice takes the lead back: Bidder 1 leads at 12.00."""
    lot = make_lot(starting_price="10.00", bid_increment="1.00")
    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "11.00")
    bid(lot, bidder, "12.00")
    return lot


# --- The stored frames: one text for every watcher --------------------------------


def test_frames_name_bidders_by_alias_in_order_of_first_bid(contested, bidder, other_bidder, third_bidder):
    outcome = bid(contested, third_bidder, "13.00")

    frames = lot_events(contested)
    assert [(f["bid"]["bidder"], f["lot"]["high_bidder"]) for f in frames] == [
        ("Bidder 1", "Bidder 1"),
        ("Bidder 2", "Bidder 2"),
        ("Bidder 1", "Bidder 1"),  # alice again: the same alias
        ("Bidder 3", "Bidder 3"),
    ]
    assert outcome.alias == "Bidder 3"
    assert names_nobody(frames)


def test_a_bidder_registered_in_the_sale_appears_by_paddle(make_lot, bidder, other_bidder):
    sale = Auction.objects.create(title="Spring", slug="spring", auto_approve=True)
    register_for_auction(auction_id=sale.pk, user=other_bidder)  # paddle 1
    register_for_auction(auction_id=sale.pk, user=bidder)  # paddle 2
    lot = make_lot(auction=sale, starting_price="10.00")

    bid(lot, bidder, "10.00")
    bid(lot, other_bidder, "11.00")

    assert [f["bid"]["bidder"] for f in lot_events(lot)] == ["Paddle 2", "Paddle 1"]


def test_the_winner_and_voided_bidder_are_named_by_alias(contested, bidder, other_bidder, seller, staff_user):
    void_bids(lot_id=contested.pk, bidder_id=bidder.pk, actor=staff_user)
    voided = lot_events(contested)[-1]
    assert (voided["type"], voided["bidder"], voided["lot"]["high_bidder"]) == ("BIDS_VOIDED", "Bidder 1", "Bidder 2")

    close_lot(lot_id=contested.pk, actor=seller)

    ended = lot_events(contested)[-1]
    assert (ended["type"], ended["lot"]["winner"]) == ("AUCTION_ENDED", "Bidder 2")
    assert names_nobody(lot_events(contested))


def test_an_alias_is_kept_forever_even_after_a_void(contested, bidder, other_bidder, third_bidder, staff_user):
    void_bids(lot_id=contested.pk, bidder_id=bidder.pk, actor=staff_user)

    # Voided, alice still holds "Bidder 1"; the next newcomer is the third.
    bid(contested, third_bidder, "20.00")
    bid(contested, other_bidder, "21.00")

    assert dict(LotAlias.objects.filter(lot=contested).values_list("user__username", "label")) == {
        "alice": "Bidder 1",
        "bob": "Bidder 2",
        "carol": "Bidder 3",
    }
    assert [f["bid"]["bidder"] for f in lot_events(contested)[-2:]] == ["Bidder 3", "Bidder 2"]


def test_a_refused_bid_names_nobody(contested, third_bidder):
    with pytest.raises(Exception, match="minimum"):
        bid(contested, third_bidder, "10.00")

    assert not LotAlias.objects.filter(lot=contested, user=third_bidder).exists()


def test_the_outbid_notice_names_the_new_leader_by_alias(contested, bidder, other_bidder):
    from lots.models import Notification

    notice = Notification.objects.filter(user=other_bidder, type="OUTBID").latest("id")
    assert notice.payload["high_bidder"] == "Bidder 1"


# --- REST: each audience ----------------------------------------------------------


def lot_and_history(client, lot) -> tuple[dict, list[dict]]:
    detail = client.get(f"/api/lots/{lot.pk}/")
    history = client.get(f"/api/lots/{lot.pk}/bids/")
    assert (detail.status_code, history.status_code) == (200, 200)
    return detail.json(), history.json()["results"]


def test_rest_public_sees_aliases_only(contested, api_client):
    lot, history = lot_and_history(api_client, contested)
    listed = api_client.get("/api/lots/").json()["results"]

    assert (lot["high_bidder"], lot["high_bidder_username"], lot["my_alias"]) == ("Bidder 1", None, None)
    assert [(row["bidder"], row["is_you"], row["bidder_username"]) for row in history] == [
        ("Bidder 1", False, None),
        ("Bidder 2", False, None),
        ("Bidder 1", False, None),
    ]
    assert names_nobody([lot, history, listed])


def test_rest_bidder_is_told_which_alias_is_theirs(contested, client_for, other_bidder):
    lot, history = lot_and_history(client_for(other_bidder), contested)

    assert (lot["high_bidder"], lot["my_alias"], lot["high_bidder_username"]) == ("Bidder 1", "Bidder 2", None)
    assert [(row["bidder"], row["is_you"]) for row in history] == [
        ("Bidder 1", False),
        ("Bidder 2", True),
        ("Bidder 1", False),
    ]
    assert names_nobody([lot, history])


def test_rest_bid_outcome_carries_the_bidders_alias(contested, client_for, third_bidder):
    response = client_for(third_bidder).post(f"/api/lots/{contested.pk}/bids/", {"amount": "20.00"}, format="json")

    assert response.status_code == 201, response.content
    assert (response.json()["bid"]["bidder"], response.json()["lot"]["high_bidder"]) == ("Bidder 3", "Bidder 3")


def test_rest_seller_sees_the_winners_username_after_the_close(contested, client_for, seller):
    open_lot, history = lot_and_history(client_for(seller), contested)
    assert (open_lot["high_bidder"], open_lot["high_bidder_username"], open_lot["winner_username"]) == (
        "Bidder 1",
        None,
        None,
    )
    assert names_nobody([open_lot, history])

    close_lot(lot_id=contested.pk, actor=seller)
    closed, history = lot_and_history(client_for(seller), contested)

    assert (closed["winner"], closed["winner_username"], closed["high_bidder_username"]) == ("Bidder 1", "alice", None)
    assert all(row["bidder_username"] is None for row in history)


def test_rest_others_do_not_see_the_winners_username(contested, client_for, api_client, seller, other_bidder):
    close_lot(lot_id=contested.pk, actor=seller)

    for client in (api_client, client_for(other_bidder)):
        lot, history = lot_and_history(client, contested)
        assert (lot["winner"], lot["winner_username"]) == ("Bidder 1", None)
        assert names_nobody([lot, history])


def test_rest_staff_see_every_username(contested, client_for, staff_user):
    lot, history = lot_and_history(client_for(staff_user), contested)

    assert (lot["high_bidder"], lot["high_bidder_username"]) == ("Bidder 1", "alice")
    assert [(row["bidder"], row["bidder_username"]) for row in history] == [
        ("Bidder 1", "alice"),
        ("Bidder 2", "bob"),
        ("Bidder 1", "alice"),
    ]


def test_openapi_schema_documents_the_alias_fields(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    lot, bid_row = schema["components"]["schemas"]["Lot"], schema["components"]["schemas"]["Bid"]

    for field in ("high_bidder", "winner", "my_alias", "high_bidder_username", "winner_username"):
        assert lot["properties"][field]["type"] == "string", field
    assert "alias" in lot["properties"]["high_bidder"]["description"]
    assert bid_row["properties"]["is_you"]["type"] == "boolean"
    assert "Staff only" in bid_row["properties"]["bidder_username"]["description"]


# --- WebSocket: each audience -------------------------------------------------------

place_bid = database_sync_to_async(bid)
close = database_sync_to_async(close_lot)


@pytest.mark.django_db(transaction=True)
async def test_ws_every_watcher_gets_the_same_frame_and_the_bidder_learns_their_alias(
    ws, new_lot, bidder, other_bidder
):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, other_bidder, "10.00")
    alice, alice_status = await ws.watch(lot, bidder)
    anonymous, anonymous_status = await ws.watch(lot)
    assert (alice_status["lot"]["my_alias"], anonymous_status["lot"]["my_alias"]) == (None, None)
    assert alice_status["lot"]["high_bidder"] == anonymous_status["lot"]["high_bidder"] == "Bidder 1"

    await alice.send({"type": "NEW_BID", "amount": "11.00", "request_id": "a-1"})
    frames = {f["type"]: f for f in [await alice.next(), await alice.next()]}
    seen = await anonymous.next()

    assert frames["BID_ACCEPTED"]["bid"]["bidder"] == "Bidder 2"
    assert frames["NEW_BID"] == seen
    assert (seen["bid"]["bidder"], seen["lot"]["high_bidder"]) == ("Bidder 2", "Bidder 2")
    assert names_nobody([alice_status, anonymous_status, frames, seen])


@pytest.mark.django_db(transaction=True)
async def test_ws_alias_is_stable_across_bids_and_reconnects(ws, new_lot, bidder, other_bidder):
    lot = await new_lot(starting_price="10.00", bid_increment="1.00")
    await place_bid(lot, bidder, "10.00")
    await place_bid(lot, other_bidder, "11.00")
    first, status = await ws.watch(lot, bidder)
    assert status["lot"]["my_alias"] == "Bidder 1"

    reply = await first.request({"type": "NEW_BID", "amount": "12.00"})
    assert (reply["type"], reply["bid"]["bidder"]) == ("BID_ACCEPTED", "Bidder 1")
    await first.communicator.disconnect()

    again, status = await ws.watch(lot, bidder)
    history = await again.request({"type": "GET_HISTORY"})

    assert status["lot"]["my_alias"] == status["lot"]["high_bidder"] == "Bidder 1"
    assert [(b["bidder"], b["is_you"]) for b in history["bids"]] == [
        ("Bidder 1", True),
        ("Bidder 2", False),
        ("Bidder 1", True),
    ]
    assert names_nobody(history)


@pytest.mark.django_db(transaction=True)
async def test_ws_public_history_and_end_name_nobody(ws, new_lot, bidder, other_bidder, seller):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "10.00")
    await place_bid(lot, other_bidder, "11.00")
    anonymous, status = await ws.watch(lot)

    history = await anonymous.request({"type": "GET_HISTORY"})
    await close(lot_id=lot.pk, actor=seller)
    ended = await anonymous.next()

    assert [(b["bidder"], b["is_you"], b["bidder_username"]) for b in history["bids"]] == [
        ("Bidder 2", False, None),
        ("Bidder 1", False, None),
    ]
    assert (ended["type"], ended["lot"]["winner"]) == ("AUCTION_ENDED", "Bidder 2")
    assert names_nobody([status, history, ended])


@pytest.mark.django_db(transaction=True)
async def test_ws_seller_sees_the_winner_and_staff_see_usernames(ws, new_lot, bidder, seller, staff_user):
    lot = await new_lot(starting_price="10.00")
    await place_bid(lot, bidder, "10.00")
    staff, staff_status = await ws.watch(lot, staff_user)
    history = await staff.request({"type": "GET_HISTORY"})
    assert staff_status["lot"]["high_bidder_username"] == "alice"
    assert [(b["bidder"], b["bidder_username"]) for b in history["bids"]] == [("Bidder 1", "alice")]

    await close(lot_id=lot.pk, actor=seller)
    _, seller_status = await ws.watch(lot, seller)

    assert (seller_status["lot"]["winner"], seller_status["lot"]["winner_username"]) == ("Bidder 1", "alice")
    assert seller_status["lot"]["high_bidder_username"] is None
