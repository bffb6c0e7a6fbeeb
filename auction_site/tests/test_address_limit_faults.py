"""`WS_CONNECTIONS_PER_IP` after a Redis fault: the address's count is its open sockets, and heals by itself.

Handshakes refused while Redis was killed or frozen once each left an entry
for their address in the process that refused them, which that process wrote
back to Redis for ever once Redis returned: addresses with nothing open were
refused with 4429 until the processes restarted. Here two real `manage.py
serve` processes share a private redis-server that the test kills or freezes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from contextlib import ExitStack

import pytest
import redis
from websockets.exceptions import ConnectionClosed, WebSocketException

from auction_site.ratelimit import CLOSE_TOO_MANY_CONNECTIONS
from auction_site.tests.servers import serve_web, ws_connect
from bids.presence import PRESENCE_TTL_SECONDS, REFRESH_EVERY_SECONDS, RedisPresence

pytestmark = [pytest.mark.services, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

LIMIT = 3
REFUSED_DURING_FAULT = 8
# An entry that reached Redis for a handshake that never opened lapses PRESENCE_TTL_SECONDS after it was written,
# before Redis came back; the margin covers one retry of the test's client.
HEAL_DEADLINE = PRESENCE_TTL_SECONDS + 5
ENTRIES = RedisPresence.key("ws-ip:127.0.0.1")


def _attempt(url: str, origin: str) -> bool:
    """A handshake while Redis is away: it must not open (refused, 1011, or timed out)."""
    try:
        with ws_connect(url, origin=origin, open_timeout=2) as ws:
            ws.recv(timeout=3)
            ws.recv(timeout=3)
    except (WebSocketException, TimeoutError, OSError):
        return False
    return True


def _open(url: str, origin: str, stack: ExitStack):
    """A socket in the lot's room (its LOT_STATUS read), or the close code / error that refused it."""
    try:
        ws = stack.enter_context(ws_connect(url, origin=origin, open_timeout=5))
        frame = json.loads(ws.recv(timeout=10))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    except (WebSocketException, TimeoutError, OSError) as exc:
        return repr(exc)[:80]
    assert frame["type"] == "LOT_STATUS", frame
    return ws


def _counted(client: redis.Redis) -> dict[bytes, float]:
    """The address's entries that have not lapsed: what the limit counts."""
    now = time.time()
    return {member: score for member, score in client.zrange(ENTRIES, 0, -1, withscores=True) if score > now}


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_the_count_per_address_is_the_open_sockets_after_a_redis_fault(
    tmp_path, static_root, private_redis, make_lot, fault
):
    lot = make_lot()
    env = {"REDIS_URL": private_redis.url, "WS_CONNECTIONS_PER_IP": str(LIMIT), "BIDS_PER_MINUTE": "0"}
    with serve_web(tmp_path, static_root, 2, **env) as web:
        rooms = [(f"{server.ws}/ws/lots/{lot.pk}/", server.url) for server in web]

        # --- The fault, and handshakes refused during it, on both processes.
        if fault == "killed":
            private_redis.kill()
        else:
            os.kill(private_redis.process.pid, signal.SIGSTOP)
        opened_during = [_attempt(*rooms[n % 2]) for n in range(REFUSED_DURING_FAULT)]
        if fault == "frozen":
            # Long enough for daphne to cancel the handshakes stuck on Redis (application_close_timeout).
            time.sleep(15)
            os.kill(private_redis.process.pid, signal.SIGCONT)
        else:
            private_redis.start()
        restored_at = time.monotonic()

        # --- LIMIT sockets from the address open again, within the heal deadline.
        client = redis.Redis.from_url(private_redis.url)
        with ExitStack() as held:
            refusals: list = []
            while True:
                attempt = ExitStack()
                results = [_open(*rooms[n % 2], attempt) for n in range(LIMIT)]
                if all(not isinstance(r, (int, str, type(None))) for r in results):
                    held.enter_context(attempt)
                    break
                attempt.close()
                refusals.append(results)
                assert time.monotonic() - restored_at < HEAL_DEADLINE, f"never healed: {refusals[-3:]}"
                time.sleep(2)
            healed_in = time.monotonic() - restored_at
            over = _open(*rooms[0], held)

            # Every process has refreshed its entries since (what lapsed meanwhile was no socket's):
            # only the open sockets are counted.
            initial = _counted(client)

            def refreshed() -> bool:
                now = _counted(client)
                return all(member not in now or now[member] > score for member, score in initial.items())

            deadline = time.monotonic() + PRESENCE_TTL_SECONDS + REFRESH_EVERY_SECONDS
            while not refreshed():
                assert time.monotonic() < deadline, "the processes never refreshed their entries"
                time.sleep(0.5)
            counted_after_refresh = len(_counted(client))
            another_over = _open(*rooms[1], held)
        with contextlib.suppress(Exception):
            client.close()

    print(f"{fault}: healed {healed_in:.1f} s after Redis came back, after {len(refusals)} refused rounds")
    assert not any(opened_during)
    assert over == CLOSE_TOO_MANY_CONNECTIONS  # The limit holds again, counted across processes.
    assert counted_after_refresh == LIMIT
    assert another_over == CLOSE_TOO_MANY_CONNECTIONS
