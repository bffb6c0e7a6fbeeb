"""Open sockets end with their account, on every process: two real `manage.py serve` processes on PostgreSQL + Redis.

A user's sockets (a `?token=` one on the first process; a ticket one and the
notifications one on the second) close with 4401 within seconds of a password
reset, a logout or a deactivation; a bid sent meanwhile on one not yet closed is
refused. A ticket socket closes when the access token it was bought with expires.
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from websockets.exceptions import ConnectionClosed

from accounts.services import deactivate_user
from bids.models import Bid
from testsupport.servers import (
    create_lot,
    http,
    next_frame,
    register_and_log_in,
    serve_web,
    ws_connect,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery-staple"
CLOSE_DEADLINE = 30
REFUSALS = {"account_inactive", "session_ended"}


def _tokens(base_url: str, username: str) -> dict:
    register_and_log_in(base_url, username, PASSWORD)
    reply = http("POST", f"{base_url}/api/auth/token/", json_body={"username": username, "password": PASSWORD})
    assert reply.status == 200, reply.body
    return reply.json()


def _ticket(base_url: str, access: str) -> str:
    reply = http("POST", f"{base_url}/api/auth/ws-ticket/", headers={"Authorization": f"Bearer {access}"})
    assert reply.status == 201, reply.body
    return reply.json()["ticket"]


def _bid(ws, amount: str, request_id: str) -> tuple[str, str | None]:
    """A NEW_BID: ("closed", None) if the socket closed first, else the answer's type and code."""
    try:
        ws.send(json.dumps({"type": "NEW_BID", "amount": amount, "request_id": request_id}))
        deadline = time.monotonic() + CLOSE_DEADLINE
        while True:
            frame = json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if frame.get("request_id") == request_id:
                return frame["type"], frame.get("code")
    except ConnectionClosed:
        return "closed", None


def _close_code(ws) -> int | None:
    """Read until the server closes the socket, within CLOSE_DEADLINE; its close code (None: still open)."""
    deadline = time.monotonic() + CLOSE_DEADLINE
    try:
        while time.monotonic() < deadline:
            try:
                ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


def _reset_password(base_url: str, username: str) -> None:
    user = get_user_model().objects.get(username=username)
    reply = http(
        "POST",
        f"{base_url}/api/auth/password-reset/confirm/",
        json_body={
            "uid": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
            "new_password": "an-entirely-new-passphrase",
            "new_password_confirm": "an-entirely-new-passphrase",
        },
    )
    assert reply.status == 200, reply.body


@pytest.mark.parametrize("ending", ["password_reset", "logout", "deactivation"])
def test_every_socket_of_the_user_closes_with_4401_on_every_process(tmp_path, static_root, settings, ending):
    # The test computes the reset token, so it signs with the servers' key.
    settings.SECRET_KEY = secrets.token_urlsafe(48)[:50]
    with (
        serve_web(tmp_path, static_root, 2, SECRET_KEY=settings.SECRET_KEY, BIDS_PER_MINUTE="0") as (one, two),
        ExitStack() as open_,
    ):
        seller = register_and_log_in(one.url, "sid")
        lot_id = create_lot(one.url, seller, ends_in=timedelta(hours=1))
        victim = _tokens(one.url, "vic")
        access = victim["access"]
        path = f"/ws/lots/{lot_id}/"
        by_token = open_.enter_context(ws_connect(f"{one.ws}{path}?token={access}", origin=one.url))
        ticket = _ticket(two.url, access)
        by_ticket = open_.enter_context(ws_connect(f"{two.ws}{path}?ticket={ticket}", origin=two.url))
        inbox = open_.enter_context(ws_connect(f"{two.ws}/ws/notifications/?token={access}", origin=two.url))
        for ws in (by_token, by_ticket):
            next_frame(ws, "LOT_STATUS")
        inbox.send(json.dumps({"type": "PING"}))
        next_frame(inbox, "PONG")  # In its rooms.

        if ending == "password_reset":
            _reset_password(one.url, "vic")
        elif ending == "logout":
            reply = http("POST", f"{two.url}/api/auth/logout/", json_body={"refresh": victim["refresh"]})
            assert reply.status == 200, reply.body
        else:  # What the admin's change form calls.
            deactivate_user(user_id=get_user_model().objects.get(username="vic").pk)
        answers = [_bid(by_token, "20.00", "after-1"), _bid(by_ticket, "25.00", "after-2")]
        codes = [_close_code(ws) for ws in (by_token, by_ticket, inbox)]

    for answer in answers:
        assert answer == ("closed", None) or (answer[0] == "BID_REJECTED" and answer[1] in REFUSALS), answers
    assert codes == [4401, 4401, 4401]
    assert not Bid.objects.filter(lot_id=lot_id).exists()


def test_a_ticket_socket_closes_when_the_token_that_bought_it_expires(tmp_path, static_root):
    with serve_web(tmp_path, static_root, 1, JWT_ACCESS_SECONDS="10") as (server,):
        seller = register_and_log_in(server.url, "sid")
        lot_id = create_lot(server.url, seller, ends_in=timedelta(hours=1))
        access = _tokens(server.url, "tia")["access"]
        ticket = _ticket(server.url, access)
        with ws_connect(f"{server.ws}/ws/lots/{lot_id}/?ticket={ticket}", origin=server.url) as ws:
            next_frame(ws, "LOT_STATUS")

            assert _close_code(ws) == 4401
