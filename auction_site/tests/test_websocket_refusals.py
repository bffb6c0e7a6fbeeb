"""Sockets no room takes, and frames over the size limit, through a real `manage.py serve` (daphne).

Channels' in-memory communicator accepted a close code (1009) that daphne's
WebSocket library refuses to send from a server, and it never shows what daphne
does when an application raises (an HTTP 500, or a 1011, with a traceback).
So these run against the real server: on its own SQLite file and in-memory
layer in the first leg, on PostgreSQL and Redis in the second.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import ON_SERVICES
from realtime.consumers import CLOSE_NOT_FOUND, CLOSE_TOO_BIG
from testsupport.live_servers import database_url_for_tests
from testsupport.servers import (
    BASE_DIR,
    MANAGE,
    ServeProcess,
    free_ports,
    http,
    json_lines,
    production_env,
    register_and_log_in,
    ws_connect,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough for a loaded machine; a refused socket is closed at once.
ANSWER_WITHIN = 30
# The attacker saw about one socket in 40 stay open: each path is tried this many times at once.
TRIES_PER_PATH = 40


@pytest.fixture
def server(tmp_path):
    """A `manage.py serve` with production settings: (address, log)."""
    env = production_env(
        STATIC_ROOT=str(tmp_path / "static"),
        MEDIA_ROOT=str(tmp_path / "media"),
        WS_MAX_MESSAGE_BYTES="200",
        # Every socket comes from 127.0.0.1: many at once are the point here.
        WS_CONNECTIONS_PER_IP="0",
    )
    env.pop("FRONTEND_URL", None)
    if ON_SERVICES:
        env.update(DATABASE_URL=database_url_for_tests(), REDIS_URL=settings.REDIS_URL)
    else:
        env.update(SQLITE_PATH=str(tmp_path / "db.sqlite3"))
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, cwd=BASE_DIR, check=True, capture_output=True)
    port = free_ports(1)
    log = tmp_path / "serve.log"
    server = ServeProcess(port, env, log, "--no-clock")
    try:
        server.wait_listening()
        yield f"127.0.0.1:{port}", log
    finally:
        server.stop()


def open_lot(address: str, username: str) -> int:
    token = register_and_log_in(f"http://{address}", username)
    ends_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = http(
        "POST",
        f"http://{address}/api/lots/",
        json_body={"title": "Carriage clock", "starting_price": "10.00", "ends_at": ends_at},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status == 201, created.body
    return created.json()["id"]


def outcome(address: str, path: str) -> str:
    """How the server answers a socket to `path`: `close <code>`, `http <status>`, `frame <type>`, or `open`."""
    try:
        with ws_connect(f"ws://{address}{path}", origin=f"http://{address}", open_timeout=ANSWER_WITHIN) as ws:
            try:
                return f"frame {json.loads(ws.recv(timeout=ANSWER_WITHIN))['type']}"
            except ConnectionClosed as closed:
                return f"close {closed.rcvd.code if closed.rcvd else None}"
            except TimeoutError:
                return "open"  # Accepted, then nothing: no application behind it.
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


def server_errors(log) -> list[str]:
    text = log.read_text(errors="replace")
    return [
        line
        for line in text.splitlines()
        if "Traceback" in line or "Exception inside application" in line or '"status": 500' in line
    ]


def test_sockets_to_paths_no_room_takes_close_with_4404_and_none_stays_open(server):
    address, log = server
    lot_id = open_lot(address, "ruth")
    bad_paths = [
        "/ws/nope/",
        "/ws/lots/",
        "/ws/lots/abc/",
        "/ws/lots/" + "9" * 200 + "/",  # group name over the layer's 100 characters
        "/ws/lots/" + "9" * 19 + "/",  # past a 64-bit id
        "/ws/auctions/" + "a" * 92 + "/",  # group name over 100 characters
        "/ws/auctions/" + "a" * 81 + "/",  # longer than any sale's slug
        f"/ws/lots/{lot_id}/extra/",
        "/api/lots/",  # Upgrade: websocket on HTTP paths
        f"/api/lots/{lot_id}/",
        "/",
    ]
    tries = [path for path in bad_paths for _ in range(TRIES_PER_PATH)]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(lambda path: (path, outcome(address, path)), tries))
    room = outcome(address, f"/ws/lots/{lot_id}/")

    wrong = sorted({(path[:60], answer) for path, answer in outcomes if answer != f"close {CLOSE_NOT_FOUND}"})
    assert wrong == []
    assert room == "frame LOT_STATUS"  # A real room still opens.
    assert server_errors(log) == []


def test_a_frame_over_the_size_limit_closes_with_4009_over_a_real_socket(server):
    address, log = server
    lot_id = open_lot(address, "oscar")
    frame = '{"type": "PING", "pad": "%s"}'
    at_limit = frame % ("x" * (200 - len(frame % "")))
    # 150 characters, but 300 bytes in UTF-8: the limit is in bytes.
    codes = []
    for over in (frame % ("é" * 150), b"x" * 201, "x" * 1_000_000):
        with ws_connect(f"ws://{address}/ws/lots/{lot_id}/", origin=f"http://{address}") as ws:
            assert json.loads(ws.recv(timeout=ANSWER_WITHIN))["type"] == "LOT_STATUS"
            ws.send(at_limit)
            while (reply := json.loads(ws.recv(timeout=ANSWER_WITHIN)))["type"] == "USERS_COUNT":
                pass
            assert reply["type"] == "PONG"
            ws.send(over)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=ANSWER_WITHIN)
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)

    assert codes == [CLOSE_TOO_BIG] * 3 == [4009] * 3
    assert server_errors(log) == []


def test_a_socket_refused_for_its_origin_gets_403_and_the_log_says_why(server):
    address, log = server
    lot_id = open_lot(address, "nora")
    statuses = []
    for origin in (None, "http://evil.example", "http://evil.example:8080"):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{address}/ws/lots/{lot_id}/", origin=origin, proxy=None, open_timeout=ANSWER_WITHIN)
        statuses.append(refused.value.response.status_code)

    assert statuses == [403, 403, 403]
    # Written before the 403 went out.
    refusals = [entry for entry in json_lines(log.read_text()) if entry.get("event") == "websocket.origin_refused"]
    assert [(e["level"], e["reason"], e["origin"], e["path"]) for e in refusals] == [
        ("WARNING", "no_origin", None, f"/ws/lots/{lot_id}/"),
        ("WARNING", "origin_not_allowed", "http://evil.example", f"/ws/lots/{lot_id}/"),
    ]
    assert "no Origin header" in refusals[0]["message"]
    assert "'http://evil.example' is neither one of ALLOWED_HOSTS" in refusals[1]["message"]
    assert server_errors(log) == []


def test_the_server_says_at_start_up_where_e_mail_links_point_when_frontend_url_is_not_set(server):
    _, log = server

    (note,) = [entry for entry in json_lines(log.read_text()) if entry.get("event") == "server.frontend_url_default"]

    # The test server is not on the default's port: every e-mailed link would miss it.
    assert note["level"] == "WARNING"
    assert note["message"] == (
        "FRONTEND_URL is not set: links in e-mails point at http://127.0.0.1:8000; "
        "set FRONTEND_URL to the address users open"
    )
