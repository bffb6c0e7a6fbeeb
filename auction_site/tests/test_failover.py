"""What the app does while PostgreSQL or Redis is away, and after Redis comes back.

Black-box where it matters: real server processes, a database address where
nothing listens, and a private Redis server that the test kills and restarts
(the shared one is never touched).
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from django.conf import settings

from testsupport.live_servers import database_url_for_tests
from testsupport.servers import (
    ServeProcess,
    TcpProxy,
    create_lot,
    free_ports,
    http,
    next_frame,
    production_env,
    register_and_log_in,
    serve_prod,
    wait_until,
    ws_connect,
)

# Seconds a request waits for a pooled database connection in the outage test.
POOL_TIMEOUT = 10

# --- PostgreSQL away ------------------------------------------------------------------------


def test_a_server_without_its_database_answers_503_with_codes(tmp_path):
    dead_port = free_ports(1)
    env = production_env(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead_port}/auction",
        DATABASE_POOL_TIMEOUT="2",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    port = free_ports(1)
    log = tmp_path / "server.log"
    server = ServeProcess(port, env, log, "--no-clock")
    try:
        server.wait_listening()
        base = f"http://127.0.0.1:{port}"
        lots = http("GET", f"{base}/api/lots/")
        login = http("POST", f"{base}/api/auth/token/", json_body={"username": "a", "password": "b"})
        ready = http("GET", f"{base}/api/ready/")
        health = http("GET", f"{base}/api/health/")
    finally:
        server.stop()

    assert (lots.status, lots.json()["code"], lots.headers["retry-after"]) == (503, "service_unavailable", "2")
    assert (login.status, login.json()["code"]) == (503, "service_unavailable")
    assert (ready.status, ready.json()["code"]) == (503, "database_unavailable")
    assert health.status == 503


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_database_outage_answers_503_and_the_pool_recovers_by_itself(tmp_path, static_root):
    db = settings.DATABASES["default"]
    proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)))
    proxy.start()
    url = database_url_for_tests().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
    try:
        # The pool waits POOL_TIMEOUT for a connection: long enough for a loaded machine to open one
        # through the relay (the stack's own migrate goes through it too), and the outage's
        # answers wait it out, so every request here gets twice that.
        with serve_prod(
            tmp_path,
            static_root,
            DATABASE_URL=url,
            DATABASE_POOL_TIMEOUT=str(POOL_TIMEOUT),
            AUCTION_CLOCK_MAX_SLEEP_SECONDS="0.5",
        ) as stack:
            one = stack.urls[0]
            before = [http("GET", f"{one}/api/lots/", timeout=2 * POOL_TIMEOUT).status for _ in range(3)]
            proxy.cut()
            during = http("GET", f"{one}/api/lots/", timeout=2 * POOL_TIMEOUT)
            ready_during = http("GET", f"{one}/api/ready/", timeout=2 * POOL_TIMEOUT)
            stack.wait_for_output("clock round failed", timeout=60)  # It retries, and does not die.
            proxy.start()
            after = [http("GET", f"{one}/api/lots/", timeout=2 * POOL_TIMEOUT).status for _ in range(3)]
            ready_after = http("GET", f"{one}/api/ready/", timeout=2 * POOL_TIMEOUT)
            children_alive = all(_alive(pid) for pid in stack.children().values())
            output = stack.output()
    finally:
        proxy.cut()

    assert before == [200, 200, 200]
    assert (during.status, during.json()["code"], during.headers["retry-after"]) == (503, "service_unavailable", "2")
    assert (ready_during.status, ready_during.json()["code"]) == (503, "database_unavailable")
    # Connections killed by the outage are checked and replaced: the first request after it succeeds.
    assert after == [200, 200, 200]
    assert ready_after.status == 200
    assert children_alive
    assert "clock round failed" in output
    assert "eyJ" not in output


# --- Redis away -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_throttled_endpoints_answer_503_when_redis_is_down(api_client, settings):
    # Throttles count in the cache; a real Redis client pointed at a port where nothing listens.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = api_client.post(
        "/api/auth/register/",
        {"username": "rae", "email": "rae@example.com", "password": "pw-Long-enough-1", "password_confirm": "x"},
        format="json",
    )

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response["Retry-After"] == "2"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_bids_commit_while_redis_is_away_and_watchers_resync_with_since(tmp_path, static_root, private_redis):
    with serve_prod(tmp_path, static_root, REDIS_URL=private_redis.url) as stack:
        one, two = stack.urls
        seller = register_and_log_in(one, "sid")
        bidder = register_and_log_in(one, "bea")
        lot_id = create_lot(one, seller, ends_in=timedelta(hours=1))
        watch = f"ws://127.0.0.1:{stack.ports[1]}/ws/lots/{lot_id}/"

        with ws_connect(watch, origin=two) as watcher:
            seen = next_frame(watcher, "LOT_STATUS")["seq"]
            private_redis.kill()
            bid = http(
                "POST",
                f"{one}/api/lots/{lot_id}/bids/",
                json_body={"amount": "20.00"},
                headers={"Authorization": f"Bearer {bidder}"},
            )
            ready_while_away = [http("GET", f"{url}/api/ready/") for url in stack.urls]
            # The socket's room lived in Redis: the server closes it, and the client reconnects.
            with pytest.raises(Exception, match="1011"):
                next_frame(watcher, "NEW_BID", timeout=60)

        private_redis.start()
        wait_until(
            lambda: all(http("GET", f"{url}/api/ready/").status == 200 for url in stack.urls),
            timeout=30,
            what="readiness after Redis came back",
        )
        replayed = _reconnect_until_replayed(f"{watch}?since={seen}", two, timeout=90)
        children_alive = all(_alive(pid) for pid in stack.children().values())
        output = stack.output()

    assert bid.status == 201, bid.body  # Committed and stored: the broadcast failed after commit.
    assert [(r.status, r.json()["code"]) for r in ready_while_away] == [(503, "channel_layer_unavailable")] * 2
    assert replayed["seq"] == seen + 1
    assert replayed["bid"]["id"] == bid.json()["bid"]["id"]
    assert children_alive  # Neither web process nor the clock died with Redis.
    assert f"broadcast failed for lot {lot_id}" in output


def _reconnect_until_replayed(url: str, origin: str, *, timeout: float) -> dict:
    """Reconnect like a client would (with `since`) until the missed NEW_BID is replayed."""
    deadline = time.monotonic() + timeout
    failures = []
    while time.monotonic() < deadline:
        try:
            with ws_connect(url, origin=origin) as ws:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == "NEW_BID":
                    return frame
                failures.append(frame["type"])
        except Exception as exc:
            failures.append(repr(exc)[:80])
        time.sleep(0.5)
    raise AssertionError(f"no replay within {timeout} s: {failures}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
