"""A real `manage.py serve` with production settings: its output is JSON and holds no credential.

The server runs as a subprocess on its own SQLite file (both legs), with
DEBUG off; the test sends tokens every way a client may (Authorization
header, `?token=` on HTTP and WebSocket, `?ticket=`) and then reads
everything the process wrote.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

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


@pytest.fixture(scope="module")
def server(tmp_path_factory, static_root):
    workdir = tmp_path_factory.mktemp("log-server")
    env = production_env(
        SQLITE_PATH=str(workdir / "db.sqlite3"), MEDIA_ROOT=str(workdir / "media"), STATIC_ROOT=str(static_root)
    )
    subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, cwd=BASE_DIR, check=True, capture_output=True)
    port = free_ports(1)
    log = workdir / "server.log"
    server = ServeProcess(port, env, log)
    try:
        server.wait_listening()
        yield f"127.0.0.1:{port}", log
    finally:
        server.stop()


def test_requests_and_sockets_are_logged_as_json_without_credentials(server):
    address, log = server
    base = f"http://{address}"
    token = register_and_log_in(base, "logan")
    ends_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = http(
        "POST",
        f"{base}/api/lots/",
        json_body={"title": "Brass telescope", "starting_price": "20.00", "ends_at": ends_at},
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "create-lot-1"},
    )
    assert created.status == 201, created.body
    lot_id = created.json()["id"]

    me = http("GET", f"{base}/api/users/me/?token={token}&ticket=t-123", headers={"Authorization": f"Bearer {token}"})
    with ws_connect(f"ws://{address}/ws/lots/{lot_id}/?token={token}", origin=f"http://{address}") as ws:
        assert '"LOT_STATUS"' in ws.recv(timeout=30)
    refused = f"ws://{address}/ws/notifications/?ticket=not-a-ticket"
    with ws_connect(refused, origin=f"http://{address}") as ws, pytest.raises(Exception, match="4401"):
        ws.recv(timeout=30)

    assert me.status == 200
    assert created.headers["x-request-id"] == "create-lot-1"
    assert re.fullmatch(r"[0-9a-f]{32}", me.headers["x-request-id"])
    output = _wait_for(log, "websocket disconnected /ws/notifications/")
    lines = output.splitlines()
    assert lines and all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")]
    entries = json_lines(output)
    assert token not in output
    assert "eyJ" not in output
    assert "token=" not in output and "ticket=" not in output
    assert "Bearer" not in output

    [create_line] = [e for e in entries if e.get("request_id") == "create-lot-1"]
    assert (create_line["method"], create_line["path"], create_line["status"]) == ("POST", "/api/lots/", 201)
    [me_line] = [e for e in entries if e.get("request_id") == me.headers["x-request-id"]]
    assert me_line["path"] == "/api/users/me/"
    sockets = [e for e in entries if e.get("event", "").startswith("websocket.") and e.get("lot_id") == lot_id]
    assert {e["event"] for e in sockets} >= {"websocket.connecting", "websocket.connected", "websocket.disconnected"}
    assert all(e["path"] == f"/ws/lots/{lot_id}/" for e in sockets)


def _wait_for(log, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        output = log.read_text(errors="replace")
        if text in output or time.monotonic() > deadline:
            return output
        time.sleep(0.05)
