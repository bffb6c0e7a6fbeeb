"""A Redis outage is two log lines per process, not a traceback per refused WebSocket (issue #15, item 15 b)."""

import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from testsupport.servers import json_lines, serve_web, ws_connect

pytestmark = [pytest.mark.services, pytest.mark.reliability]

REFUSED_DURING = 20


def close_code(server) -> int | str:
    """Open a socket on a lot that does not exist: 4404 when Redis answers (the room is joined first), else 1011."""
    try:
        with ws_connect(f"{server.ws}/ws/lots/999999999/", origin=server.url, open_timeout=10) as socket:
            socket.recv(timeout=15)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else "no close frame"
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"
    return "open"


@pytest.mark.django_db(transaction=True)
def test_a_redis_outage_logs_one_warning_and_a_count_not_a_traceback_per_socket(tmp_path, static_root, private_redis):
    with serve_web(tmp_path, static_root, 1, REDIS_URL=private_redis.url) as (server,):
        assert close_code(server) == 4404
        private_redis.kill()
        during = [close_code(server) for _ in range(REFUSED_DURING)]
        private_redis.start()
        deadline, after = time.monotonic() + 30, None
        while time.monotonic() < deadline and after != 4404:
            after = close_code(server)
            time.sleep(0.2)
        output = server.output()

    assert during == [1011] * REFUSED_DURING
    assert after == 4404
    lines = json_lines(output)
    started = [line for line in lines if line.get("event") == "redis.outage_started"]
    ended = [line for line in lines if line.get("event") == "redis.outage_ended"]
    assert len(started) == 1, started
    assert len(ended) == 1, ended
    assert ended[0]["refused"] >= REFUSED_DURING
    assert "Traceback" not in output
    assert not [line for line in lines if line.get("level") in {"ERROR", "CRITICAL"}], output[-3000:]
