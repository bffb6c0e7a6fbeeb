"""A REST bid through a real `manage.py serve` on PostgreSQL waits for its lot's next transaction with the
process's other bids on the lot: as a future on the server's loop, not as a thread parked on the lot's row
lock, and without holding a database connection the transaction needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from django.conf import settings

from bids.models import Bid
from conftest import access_token_for
from testsupport.live_servers import ServeProcess, _direct, database_url_for_tests, live_server_processes, request

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

# Generous: what must happen may take this long on a loaded machine.
GENEROUS = 60


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {GENEROUS} s: {what}")
        time.sleep(0.05)


def bids_waiting(server: ServeProcess) -> float:
    with _direct.open(f"{server.url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return next(float(line.split()[1]) for line in lines if line.startswith("auction_bids_waiting "))


def lock_waiters(conn: psycopg.Connection) -> int:
    """Backends of the test database (other than `conn`'s) waiting for a lock."""
    with psycopg.connect(database_url_for_tests(), autocommit=True) as observer:
        (count,) = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND pid <> %s",
            [conn.info.backend_pid],
        ).fetchone()
    return count


def test_rest_bids_wait_for_their_lots_transaction_on_the_loop_holding_no_connection(make_lot, make_user):
    lot = make_lot(starting_price="10.00")
    tokens = [access_token_for(make_user()) for _ in range(6)]
    bids_url = f"/api/lots/{lot.pk}/bids/"
    env = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "BIDS_PER_MINUTE": "0",
        # Fewer connections than waiting bids: a bid that held one while it waited would starve the transaction.
        "DATABASE_POOL_MIN": "1",
        "DATABASE_POOL_MAX": "2",
        "DATABASE_POOL_TIMEOUT": "3",
    }
    with (
        live_server_processes(1, env=env) as [server],
        psycopg.connect(database_url_for_tests()) as holder,
        ThreadPoolExecutor(len(tokens)) as pool,
    ):
        holder.execute("SELECT 1 FROM lots_lot WHERE id = %s FOR UPDATE", [lot.pk])

        def bid(token: str, amount: str):
            return pool.submit(request, "POST", server.url + bids_url, token=token, data={"amount": amount})

        first = bid(tokens[0], "10.00")
        wait_until(lambda: lock_waiters(holder) == 1, "the first bid's transaction waits for the lot's lock")
        later = [bid(token, f"{11 + i}.00") for i, token in enumerate(tokens[1:])]
        wait_until(lambda: bids_waiting(server) == len(later), "the later bids wait for the next transaction")
        # They wait on the loop: still only the first transaction waits in the database.
        assert lock_waiters(holder) == 1
        holder.rollback()
        answers = [future.result(timeout=GENEROUS) for future in [first, *later]]

    assert answers[0][0] == 201, answers[0]
    codes = [body.get("code") for _, body in answers]
    assert [status for status, _ in answers] == [201 if code == "accepted" else 409 for code in codes], answers
    assert set(codes) <= {"accepted", "bid_too_low"}, answers
    accepted = {body["bid"]["id"] for _, body in answers if body.get("code") == "accepted"}
    # The bids that waited went together; the first of them in arrival order always stands.
    assert len(accepted) >= 2
    assert set(Bid.objects.filter(lot=lot).values_list("id", flat=True)) == accepted
