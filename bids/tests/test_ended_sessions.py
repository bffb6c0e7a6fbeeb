"""A user deactivated, logged out or whose password changed: no more writes, and their open sockets close with 4401.

The services read the user's row afresh, so a socket's user (loaded at the
handshake) cannot write once the account is inactive or its sessions ended,
whenever the close message reaches the socket. The live, two-process version
is in auction_site/tests/test_session_end_live.py.
"""

from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from accounts import services as account_services
from accounts.services import change_password, deactivate_user, end_sessions, issue_ws_ticket, log_out
from bids.exceptions import BidRejected
from bids.services import buy_now, hide_chat_message, place_bid, post_chat_message
from lots.services import close_lot
from ops.exceptions import DomainError

User = get_user_model()

ENDINGS = {
    "deactivated": (lambda user: deactivate_user(user_id=user.pk), "account_inactive"),
    "password_changed": (
        lambda user: change_password(user=User.objects.get(pk=user.pk), new_password="N3w-s3cret!x"),
        "session_ended",
    ),
    "logged_out": (lambda user: end_sessions(user_ids=[user.pk]), "session_ended"),
    "deleted": (lambda user: User.objects.filter(pk=user.pk).delete(), "account_inactive"),
}


def code_of(func, **kwargs) -> str:
    with pytest.raises(DomainError) as caught:
        func(**kwargs)
    return caught.value.code


# --- The services, with the user object loaded before the change (as a socket holds it) -----------


@pytest.mark.django_db
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_bid_from_a_user_whose_session_ended_is_refused(make_lot, bidder, ending):
    lot = make_lot()
    end, code = ENDINGS[ending]
    end(bidder)

    with pytest.raises(BidRejected) as caught:
        place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    assert caught.value.code == code
    assert caught.value.status_code == 403
    lot.refresh_from_db()
    assert lot.bid_count == 0


@pytest.mark.django_db
def test_buy_now_from_a_deactivated_user_is_refused(make_lot, bidder):
    lot = make_lot(buy_now_price="100.00")
    deactivate_user(user_id=bidder.pk)

    assert code_of(buy_now, lot_id=lot.pk, buyer=bidder) == "account_inactive"
    lot.refresh_from_db()
    assert (lot.status, lot.bid_count) == ("open", 0)


@pytest.mark.django_db
def test_chat_from_a_deactivated_user_is_refused(make_lot, bidder):
    lot = make_lot()
    deactivate_user(user_id=bidder.pk)

    assert code_of(post_chat_message, lot_id=lot.pk, author=bidder, text="Still here?") == "account_inactive"


@pytest.mark.django_db
def test_a_seller_deactivated_since_can_neither_hide_chat_nor_close_the_lot(make_lot, seller, bidder):
    lot = make_lot()
    message = post_chat_message(lot_id=lot.pk, author=bidder, text="Hello")
    deactivate_user(user_id=seller.pk)

    assert code_of(hide_chat_message, lot_id=lot.pk, message_id=message.pk, actor=seller) == "account_inactive"
    assert code_of(close_lot, lot_id=lot.pk, actor=seller) == "account_inactive"


@pytest.mark.django_db
def test_a_fresh_user_object_after_a_password_change_bids(make_lot, bidder):
    """A new login (a fresh user row) is a new session: the check refuses only what predates the change."""
    lot = make_lot()
    change_password(user=bidder, new_password="N3w-s3cret!x")

    place_bid(lot_id=lot.pk, bidder=User.objects.get(pk=bidder.pk), amount="10.00")


@pytest.mark.django_db
@pytest.mark.parametrize("ending", ["deactivated", "password_changed", "logged_out"])
def test_ending_sessions_closes_the_sockets_after_commit(bidder, ending, django_capture_on_commit_callbacks):
    end, _ = ENDINGS[ending]
    with mock.patch.object(account_services, "close_sockets") as close_sockets:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            end(bidder)
        close_sockets.assert_not_called()
        for callback in callbacks:
            callback()

    close_sockets.assert_called_once_with(user_ids=[bidder.pk])


@pytest.mark.django_db
def test_log_out_blacklists_and_ends_the_sessions(bidder, django_capture_on_commit_callbacks):
    from rest_framework_simplejwt.tokens import RefreshToken

    refresh = RefreshToken.for_user(bidder)
    with (
        mock.patch.object(account_services, "close_sockets") as close_sockets,
        django_capture_on_commit_callbacks(execute=True),
    ):
        log_out(refresh=str(refresh))

    close_sockets.assert_called_once_with(user_ids=[bidder.pk])
    assert User.objects.get(pk=bidder.pk).session_epoch == bidder.session_epoch + 1


# --- Sockets (Channels' in-memory communicator; the live version runs real processes) -------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["deactivated", "password_changed", "logged_out"])
async def test_every_socket_of_the_user_closes_with_4401(ws, new_lot, bidder, other_bidder, ending):
    lot = await new_lot()
    by_token, _ = await ws.watch(lot, bidder)
    ticket = await database_sync_to_async(issue_ws_ticket)(user=bidder)
    by_ticket = await ws.open(f"/ws/lots/{lot.pk}/?ticket={ticket}")
    inbox = await ws.open("/ws/notifications/", user=bidder)
    bystander, _ = await ws.watch(lot, other_bidder)
    end, _ = ENDINGS[ending]

    await database_sync_to_async(end)(bidder)

    assert [await socket.close_code() for socket in (by_token, by_ticket, inbox)] == [4401] * 3
    assert await bystander.is_open()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["deactivated", "password_changed", "logged_out"])
async def test_a_bid_on_a_socket_not_yet_closed_is_refused(ws, new_lot, bidder, ending):
    lot = await new_lot(starting_price="10.00")
    socket, _ = await ws.watch(lot, bidder)
    end, code = ENDINGS[ending]

    # The close message has not reached the socket yet.
    with mock.patch.object(account_services, "close_sockets"):
        await database_sync_to_async(end)(bidder)
    reply = await socket.request({"type": "NEW_BID", "amount": "10.00", "request_id": "late"})
    chat = await socket.request({"type": "CHAT", "text": "Still here?"})

    assert (reply["type"], reply["code"], reply["request_id"]) == ("BID_REJECTED", code, "late")
    assert (chat["type"], chat["code"]) == ("ERROR", code)


@pytest.mark.django_db(transaction=True)
async def test_a_socket_opened_as_the_sessions_end_closes_with_4401(ws, new_lot, bidder):
    """Authenticated before the end, in the user's group only after its message went out: nobody tells it."""
    lot = await new_lot()
    real_session_open = account_services.ensure_session_open

    def sessions_end_meanwhile(*, user):
        end_sessions(user_ids=[user.pk])
        real_session_open(user=user)

    with (
        mock.patch.object(account_services, "ensure_session_open", sessions_end_meanwhile),
        mock.patch.object(account_services, "close_sockets"),  # Its message went out before the join.
    ):
        socket = await ws.open(f"/ws/lots/{lot.pk}/", user=bidder)

        assert await socket.close_code() == 4401
