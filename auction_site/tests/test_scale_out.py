"""`manage.py serve_prod` (what `make serve-prod` runs): two web processes and a clock on PostgreSQL + Redis.

Black-box, through the public API of each process: a bid placed on process 1
reaches a WebSocket watcher on process 2, the clock process closes a lot for
watchers on process 2, each process counts its own traffic at /metrics and
answers /api/ready/, and Ctrl-C (SIGINT to the launcher) stops every child.
The processes reach the test database, so the test commits (transaction=True).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest

from testsupport.servers import (
    create_lot,
    http,
    json_lines,
    metric_value,
    next_frame,
    register_and_log_in,
    serve_prod,
    wait_until,
    ws_connect,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

METRICS_TOKEN = "scrape-token-for-the-scale-out-test"


@pytest.fixture
def stack(tmp_path, static_root):
    with serve_prod(
        tmp_path,
        static_root,
        METRICS_TOKEN=METRICS_TOKEN,
        # The lot-closing check below should not wait for a long idle sleep.
        AUCTION_CLOCK_MAX_SLEEP_SECONDS="1",
    ) as stack:
        yield stack


def test_a_bid_on_one_process_reaches_a_watcher_on_the_other(stack):
    one, two = stack.urls
    seller = register_and_log_in(one, "sally")
    bidder = register_and_log_in(two, "bert")  # Tokens from one process work on the other.
    rival = register_and_log_in(one, "rita")
    lot_id = create_lot(one, seller, ends_in=timedelta(hours=1))
    ws_url = f"ws://127.0.0.1:{stack.ports[1]}/ws/lots/{lot_id}/?token={bidder}"

    with ws_connect(ws_url, origin=two) as watcher:
        status = next_frame(watcher, "LOT_STATUS")
        assert metric_value(stack.metrics(1), "auction_websockets_open", {"consumer": "LotConsumer"}) == 1
        # An idle socket stays open: a channel-layer receive outlives Redis client read timeouts.
        time.sleep(7)
        watcher.send(json.dumps({"type": "PING"}))
        assert next_frame(watcher, "PONG")["type"] == "PONG"

        bid = http(
            "POST",
            f"{one}/api/lots/{lot_id}/bids/",
            json_body={"amount": "20.00"},
            headers={"Authorization": f"Bearer {bidder}", "X-Request-ID": "scale-bid-1"},
        )
        low = http(
            "POST",
            f"{one}/api/lots/{lot_id}/bids/",
            json_body={"amount": "20.00"},
            headers={"Authorization": f"Bearer {rival}"},
        )
        event = next_frame(watcher, "NEW_BID")

    assert bid.status == 201, bid.body
    assert bid.headers["x-request-id"] == "scale-bid-1"
    assert (low.status, low.json()["code"]) == (409, "bid_too_low")
    assert event["seq"] == status["seq"] + 1
    assert event["bid"]["id"] == bid.json()["bid"]["id"]
    assert (event["bid"]["amount"], event["bid"]["bidder"]) == ("20.00", "Bidder 1")  # bert, by his alias
    assert http("GET", f"{two}/api/lots/{lot_id}/").json()["current_price"] == "20.00"

    # Each process counts what it served: the bids went to process 1 only.
    first, second = stack.metrics(0), stack.metrics(1)
    assert metric_value(first, "auction_bids_accepted_total", {"kind": "bid"}) == 1
    assert metric_value(first, "auction_bids_rejected_total", {"kind": "bid", "code": "bid_too_low"}) == 1
    assert metric_value(first, "auction_http_requests_total", {"method": "POST", "status": "201"}) >= 4
    assert metric_value(first, "auction_broadcast_seconds_count") >= 1
    assert metric_value(second, "auction_bids_accepted_total", {"kind": "bid"}) is None
    wait_until(
        lambda: metric_value(stack.metrics(1), "auction_websockets_open", {"consumer": "LotConsumer"}) == 0,
        timeout=30,
        what="the socket gauge dropping back",
    )

    # Through a proxy (X-Forwarded-For), /metrics needs the token.
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert http("GET", f"{one}/metrics", headers=forwarded).status == 403
    with_token = http("GET", f"{one}/metrics", headers={**forwarded, "Authorization": f"Bearer {METRICS_TOKEN}"})
    assert with_token.status == 200

    for url in stack.urls:
        ready = http("GET", f"{url}/api/ready/")
        assert ready.status == 200, ready.body
        assert ready.json() == {"status": "ready", "database": True, "channel_layer": True, "migrations": True}

    output = stack.output()
    assert "eyJ" not in output and "token=" not in output and "Bearer" not in output
    [bid_line] = [entry for entry in json_lines(output) if entry.get("request_id") == "scale-bid-1"]
    assert (bid_line["path"], bid_line["status"], bid_line["lot_id"]) == (f"/api/lots/{lot_id}/bids/", 201, lot_id)
    assert bid_line["pid"] == stack.children()[f"web 1 {one}/"]


def test_the_clock_process_closes_lots_for_watchers_of_any_process(stack):
    one, two = stack.urls
    seller = register_and_log_in(one, "clara")
    # Time enough for the watcher to join before the end, on a loaded machine too.
    lot_id = create_lot(one, seller, ends_in=timedelta(seconds=10))

    with ws_connect(f"ws://127.0.0.1:{stack.ports[1]}/ws/lots/{lot_id}/", origin=two) as watcher:
        assert next_frame(watcher, "LOT_STATUS")["lot"]["status"] == "open"
        ended = next_frame(watcher, "AUCTION_ENDED", timeout=60)

    assert ended["lot"]["id"] == lot_id
    assert ended["lot"]["status"] in {"closed", "unsold"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_ctrl_c_stops_every_child(stack):
    children = stack.children()
    assert len(children) == 3  # Two web processes and a clock.
    assert all(_alive(pid) for pid in children.values())

    stack.launcher.send_signal(signal.SIGINT)  # The launcher alone: it must stop the children itself.
    returncode = stack.launcher.wait(30)

    assert returncode == 0, stack.output()[-4000:]
    assert stack.output().rstrip().endswith("stopped")
    assert [name for name, pid in children.items() if _alive(pid)] == []
    assert not any(_listening(port) for port in stack.ports)


def test_the_launcher_stops_everything_when_a_child_dies(stack):
    children = stack.children()
    web_two = children[f"web 2 {stack.urls[1]}/"]

    os.kill(web_two, signal.SIGKILL)
    returncode = stack.launcher.wait(30)

    assert returncode == 1
    assert "exited with -9: stopping the others" in stack.output()
    assert [name for name, pid in children.items() if _alive(pid)] == []
