"""`WS_CONNECTIONS_PER_IP` after a Redis fault: the address's count is its open sockets, and heals by itself.

Handshakes refused while Redis was killed or frozen once each left an entry
for their address in the process that refused them, which that process wrote
back to Redis for ever once Redis returned: addresses with nothing open were
refused with 4429 until the processes restarted. Here two real `manage.py
serve` processes share a private redis-server that the test kills or freezes;
their heartbeats lapse after `PROCESS_TTL` seconds (45 by default), so they
rewrite their counts every `PROCESS_TTL / 3`.
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

from realtime.limits import CLOSE_TOO_MANY_CONNECTIONS, sockets_key
from realtime.processes import PROCESSES_KEY
from testsupport.servers import serve_web, ws_connect

pytestmark = [pytest.mark.services, pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

LIMIT = 3
REFUSED_DURING_FAULT = 8
PROCESS_TTL = 9
# A count that reached Redis for a handshake that never opened is set right by its process's next
# heartbeats (every PROCESS_TTL / 3); generous for a loaded machine.
HEAL_DEADLINE = 2 * PROCESS_TTL + 30
KEY = sockets_key("127.0.0.1")


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


def _still_open(ws) -> bool:
    """Whether the server has not closed the socket (frames it sends meanwhile are read and dropped)."""
    try:
        while True:
            ws.recv(timeout=1)
    except TimeoutError:
        return True
    except ConnectionClosed:
        return False


def _counted(client: redis.Redis) -> dict[str, int]:
    """The address's count per process in Redis: what the limit sums."""
    return {process.decode(): int(count) for process, count in client.hgetall(KEY).items()}


def _beats(client: redis.Redis) -> dict[str, float]:
    """When each process's heartbeat lapses: it moves on at every beat."""
    return {process.decode(): score for process, score in client.zrange(PROCESSES_KEY, 0, -1, withscores=True)}


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_the_count_per_address_is_the_open_sockets_after_a_redis_fault(
    tmp_path, static_root, private_redis, make_lot, fault
):
    lot = make_lot()
    env = {
        "REDIS_URL": private_redis.url,
        "WS_CONNECTIONS_PER_IP": str(LIMIT),
        "BIDS_PER_MINUTE": "0",
        "REALTIME_PROCESS_TTL_SECONDS": str(PROCESS_TTL),
    }
    with serve_web(tmp_path, static_root, 2, **env) as web:
        rooms = [(f"{server.ws}/ws/lots/{lot.pk}/", server.url) for server in web]

        # --- A socket opened and closed on each process first: their Redis pools hold a connection,
        # so a handshake during a freeze sends its writes, which land when Redis resumes.
        client = redis.Redis.from_url(private_redis.url)
        with ExitStack() as warm:
            assert not any(isinstance(_open(*room, warm), (int, str, type(None))) for room in rooms)
        deadline = time.monotonic() + 30
        while _counted(client):
            assert time.monotonic() < deadline, f"closed sockets still counted: {_counted(client)}"
            time.sleep(0.2)
        client.close()

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

        # --- LIMIT sockets from the address open again, within the heal deadline, all on the first
        # process: the second, which refused handshakes during the fault, has none from the address.
        client = redis.Redis.from_url(private_redis.url)
        with ExitStack() as held:
            refusals: list = []
            while True:
                attempt = ExitStack()
                results = [_open(*rooms[0], attempt) for _ in range(LIMIT)]
                # Open, and still open: a socket may also fail on Redis after its LOT_STATUS (1011).
                if all(not isinstance(r, (int, str, type(None))) and _still_open(r) for r in results):
                    held.enter_context(attempt)
                    break
                attempt.close()
                refusals.append(results)
                assert time.monotonic() - restored_at < HEAL_DEADLINE, f"never healed: {refusals[-3:]}"
                time.sleep(2)
            healed_in = time.monotonic() - restored_at

            # Every process has beaten twice since (a late write from the fault lands before the
            # second; three lapse times seen): each process's count is its open sockets (the first
            # holds them all, the second has no field), and the limit holds again across processes. (Until a
            # process's first beat after an outage longer than its heartbeat's lapse, the others
            # do not count its sockets: the limit errs open, for a beat.)
            seen: dict[str, set[float]] = {}
            deadline = time.monotonic() + 2 * PROCESS_TTL + 30
            while len(seen) < 2 or any(len(scores) < 3 for scores in seen.values()):
                assert time.monotonic() < deadline, f"the processes never beat twice: {seen}"
                for process, score in _beats(client).items():
                    seen.setdefault(process, set()).add(score)
                time.sleep(0.5)
            counted_after_beats = _counted(client)
            assert all(_still_open(ws) for ws in results), "a held socket was closed by the server"
            expected = {f"{web[0].process.pid}-": LIMIT}
            over = _open(*rooms[0], held)
            another_over = _open(*rooms[1], held)
        with contextlib.suppress(Exception):
            client.close()

    print(f"{fault}: healed {healed_in:.1f} s after Redis came back, after {len(refusals)} refused rounds")
    assert not any(opened_during)
    assert over == CLOSE_TOO_MANY_CONNECTIONS  # The limit holds again, counted across processes.
    assert {process[: process.index("-") + 1]: n for process, n in counted_after_beats.items()} == expected
    assert another_over == CLOSE_TOO_MANY_CONNECTIONS
