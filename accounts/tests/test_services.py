"""Service rules that need concurrency to show: registration and ticket redemption races."""

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction

from accounts.services import aredeem_ws_ticket, issue_ws_ticket, register_user
from conftest import PASSWORD
from ops.exceptions import InvalidInput

User = get_user_model()


@pytest.mark.django_db
def test_register_user_email_taken(make_user):
    make_user("dolores", email="dora@example.com")

    with pytest.raises(InvalidInput) as excinfo:
        register_user(username="dora", email="Dora@Example.COM", password=PASSWORD)

    assert excinfo.value.code == "email_taken"


@pytest.mark.django_db
def test_register_user_username_taken(make_user):
    make_user("dora")

    with pytest.raises(InvalidInput) as excinfo:
        register_user(username="DORA", email="other@example.com", password=PASSWORD)

    assert excinfo.value.code == "username_taken"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_register_user_racing_a_concurrent_registration():
    """The other registration commits between our check and our insert: `email_taken`, not a 500."""
    outcome: dict = {}
    pid_known = threading.Event()

    def register_second():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["pid"] = cursor.fetchone()[0]
            pid_known.set()
            register_user(username="dora2", email="DORA@example.com", password=PASSWORD)
            outcome["result"] = "created"
        except InvalidInput as exc:
            outcome["result"] = exc.code
        except Exception as exc:
            outcome["result"] = repr(exc)
        finally:
            pid_known.set()
            connections.close_all()

    second = threading.Thread(target=register_second)
    with transaction.atomic():
        User.objects.create_user(username="dora", email="dora@example.com", password=PASSWORD)
        second.start()
        assert pid_known.wait(30)
        # Wait until the second insert blocks on our uncommitted row in the unique index.
        deadline = time.monotonic() + 30
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", [outcome["pid"]])
                if cursor.fetchone():
                    break
                time.sleep(0.01)
            else:
                pytest.fail(f"the second registration never waited for the first: {outcome}")
    second.join(30)

    assert outcome["result"] == "email_taken"
    assert list(User.objects.values_list("username", flat=True)) == ["dora"]


# --- WebSocket tickets ---------------------------------------------------------------


async def test_ticket_redeemed_concurrently_opens_once():
    class Someone:
        pk = 42

    ticket = issue_ws_ticket(user=Someone())

    results = await asyncio.gather(*(aredeem_ws_ticket(ticket=ticket) for _ in range(20)))

    assert sorted((r and r.user_id for r in results), key=str) == [42] + [None] * 19


def test_tickets_are_independent():
    class Someone:
        pk = 7

    first, second = issue_ws_ticket(user=Someone()), issue_ws_ticket(user=Someone())

    assert async_to_sync(aredeem_ws_ticket)(ticket=first).user_id == 7
    assert async_to_sync(aredeem_ws_ticket)(ticket=second).user_id == 7


@pytest.mark.services
def test_ticket_redeemed_from_many_threads_opens_once_on_redis(settings):
    """Each thread has its own Redis connection, as separate server processes would."""
    assert "redis" in settings.CACHES["default"]["BACKEND"].lower()

    class Someone:
        pk = 42

    ticket = issue_ws_ticket(user=Someone())
    start = threading.Barrier(8)
    results: list = []

    def redeem():
        start.wait()
        redeemed = async_to_sync(aredeem_ws_ticket)(ticket=ticket)
        results.append(redeemed and redeemed.user_id)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results, key=str) == [42] + [None] * 7
