"""Request ids, JSON logs without credentials, readiness, and the Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.migrations.recorder import MigrationRecorder
from django.test import RequestFactory
from prometheus_client import REGISTRY

from auction_site.asgi import application
from bids.services import place_bid
from conftest import access_token_for
from ops import health
from ops.logs import JsonFormatter, RequestIdFilter, TextFormatter, access_log, scrub
from testsupport.servers import metric_value

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJl"


def formatted(records: list[logging.LogRecord]) -> list[dict]:
    formatter, stamp = JsonFormatter(), RequestIdFilter()
    lines = []
    for record in records:
        stamp.filter(record)
        lines.append(formatter.format(record))
    for line in lines:
        assert "eyJ" not in line and not re.search(r"token=(?!\[redacted\])", line), line
    return [json.loads(line) for line in lines]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- Request ids --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_id_is_generated_and_echoed(api_client):
    first = api_client.get("/api/lots/")
    second = api_client.get("/api/lots/")

    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


@pytest.mark.django_db
def test_the_client_request_id_is_echoed(api_client):
    response = api_client.get("/api/lots/", HTTP_X_REQUEST_ID="checkout-42.retry-1")

    assert response["X-Request-ID"] == "checkout-42.retry-1"


@pytest.mark.django_db
@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 129, "semi;colon", ""])
def test_an_unsafe_request_id_is_replaced(api_client, unsafe):
    response = api_client.get("/api/lots/", HTTP_X_REQUEST_ID=unsafe)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_probes_carry_a_request_id_too(api_client):
    assert api_client.get("/api/health/", HTTP_X_REQUEST_ID="probe-1")["X-Request-ID"] == "probe-1"


# --- Logs ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_request_log_line_is_json_with_the_request_id_and_no_credentials(api_client, make_lot, caplog):
    lot = make_lot()
    caplog.set_level(logging.INFO, logger="auction_site.request")

    response = api_client.get(
        f"/api/lots/{lot.pk}/bids/?token={JWT}&ticket=abc123",
        HTTP_AUTHORIZATION=f"Bearer {JWT}",
        HTTP_X_REQUEST_ID="req-77",
    )

    assert response.status_code == 401  # The bad token is refused.
    [line] = formatted([r for r in caplog.records if r.name == "auction_site.request"])
    assert line["request_id"] == "req-77"
    assert line["path"] == f"/api/lots/{lot.pk}/bids/"
    assert line["lot_id"] == lot.pk
    assert line["method"] == "GET"
    assert line["status"] == 401
    assert line["level"] == "INFO"
    assert isinstance(line["duration_ms"], float)


def test_records_logged_during_a_request_carry_its_id(api_client, caplog):
    # No database: the health check logs a warning from inside the view.
    caplog.set_level(logging.INFO)

    api_client.get("/api/health/", HTTP_X_REQUEST_ID="inside-1")

    lines = formatted(caplog.records)
    warnings = [line for line in lines if line["logger"] == "ops.health"]
    assert warnings and all(line["request_id"] == "inside-1" for line in warnings)
    assert "exc" in warnings[0]


def test_the_formatter_scrubs_messages_extras_and_tracebacks():
    logger = logging.getLogger("auction_site.tests")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning(
            "fetch /ws/lots/3/?token=%s failed; header Bearer %s", JWT, JWT, extra={"url": f"/x?ticket={JWT}"}
        )
        try:
            raise ValueError(f"bad credentials token={JWT}")
        except ValueError:
            logger.exception("while authenticating")
        logger.error("boom", extra={"request": RequestFactory().get(f"/api/lots/?token={JWT}")})
    finally:
        logger.removeHandler(handler)

    first, second, third = formatted(records)
    assert first["message"] == "fetch /ws/lots/3/?[redacted] failed; header Bearer [redacted]"
    assert first["url"] == "/x?[redacted]"
    assert "ValueError: bad credentials token=[redacted]" in second["exc"]
    assert third["request"] == {"method": "GET", "path": "/api/lots/"}


def test_the_text_format_is_scrubbed_too():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /api/?access=%s", (JWT,), None)

    line = TextFormatter().format(record)

    assert "eyJ" not in line and line.endswith("GET /api/?[redacted]")


@pytest.mark.parametrize(
    "text",
    [f"Authorization: Bearer {JWT}", f"/ws/lots/1/?token={JWT}", f"password=hunter2 and {JWT}", "/p?refresh=r"],
)
def test_scrub_removes_every_kind_of_credential(text):
    clean = scrub(text)

    assert "eyJ" not in clean and "hunter2" not in clean and "refresh=r" not in clean


def test_websocket_access_lines_drop_the_query_string(caplog):
    caplog.set_level(logging.INFO, logger="auction_site.access")

    access_log("websocket", "connected", {"path": f"/ws/lots/12/?token={JWT}", "client": "10.0.0.9:5123"})
    access_log("http", "complete", {"path": f"/api/lots/?token={JWT}", "status": 200})

    [line] = formatted(caplog.records)
    assert line["path"] == "/ws/lots/12/"
    assert line["lot_id"] == 12
    assert line["event"] == "websocket.connected"
    assert line["client"] == "10.0.0.9:5123"


# --- Readiness ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_ready(api_client):
    response = api_client.get("/api/ready/")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": True, "channel_layer": True, "migrations": True}


def test_not_ready_without_the_database(api_client):
    response = api_client.get("/api/ready/")

    assert response.status_code == 503
    assert response.json()["code"] == "database_unavailable"
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_not_ready_without_the_fanouts_redis(api_client, redis_unreachable):
    response = api_client.get("/api/ready/")

    assert response.status_code == 503
    assert response.json()["code"] == "channel_layer_unavailable"


@pytest.mark.django_db
def test_not_ready_while_a_migration_is_pending(api_client, monkeypatch):
    monkeypatch.setattr(health, "_migrations_applied", False)
    latest = MigrationRecorder.Migration.objects.filter(app="bids").order_by("-id").first()
    latest.delete()  # Rolled back with the test.

    response = api_client.get("/api/ready/")

    assert response.status_code == 503
    assert response.json()["code"] == "migrations_pending"
    assert response.json()["migrations"] is False


@pytest.mark.django_db
def test_probes_answer_any_host_and_plain_http_where_pages_do_not(api_client, settings):
    settings.ALLOWED_HOSTS = ["auctions.example.com"]
    settings.SECURE_SSL_REDIRECT = True

    page = api_client.get("/api/lots/", HTTP_HOST="10.0.0.7:8000")
    ready = api_client.get("/api/ready/", HTTP_HOST="10.0.0.7:8000")
    metrics = api_client.get("/metrics", HTTP_HOST="10.0.0.7:8000")

    assert page.status_code == 400  # DisallowedHost
    assert ready.status_code == 200
    assert metrics.status_code == 200
    assert api_client.get("/api/lots/", HTTP_HOST="auctions.example.com").status_code == 301  # To HTTPS.


# --- /metrics -----------------------------------------------------------------------------


def test_metrics_from_loopback(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    body = response.content.decode()
    for family in ("auction_http_requests_total", "auction_bids_accepted_total", "auction_bids_rejected_total",
                   "auction_websockets_open", "auction_broadcast_seconds"):  # fmt: skip
        assert f"# TYPE {family.removesuffix('_total')}" in body


def test_metrics_count_http_requests_by_method_and_status(client):
    before = sample("auction_http_requests_total", method="GET", status="403")

    client.get("/metrics", REMOTE_ADDR="203.0.113.5")

    assert sample("auction_http_requests_total", method="GET", status="403") == before + 1


def test_metrics_are_refused_from_outside(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.5")

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_metrics_relayed_by_the_proxy_need_the_token(client):
    # The proxy's own address is internal: a forwarded request is judged by token only.
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")

    assert response.status_code == 403


def test_metrics_allowed_networks_come_from_settings(client, settings):
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    assert client.get("/metrics", REMOTE_ADDR="10.2.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_with_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = "scrape-me-0123456789"

    good = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789")
    bad = client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer scrape-me")
    forwarded = client.get(
        "/metrics", HTTP_X_FORWARDED_FOR="203.0.113.5", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789"
    )

    assert (good.status_code, bad.status_code, forwarded.status_code) == (200, 403, 200)


def test_no_token_configured_means_no_token_works(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics", REMOTE_ADDR="203.0.113.5", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.django_db
def test_bids_are_counted_accepted_and_rejected_by_code(make_lot, bidder, other_bidder, client_for):
    lot = make_lot(starting_price=Decimal("10.00"))
    accepted = sample("auction_bids_accepted_total", kind="bid")
    too_low = sample("auction_bids_rejected_total", kind="bid", code="bid_too_low")
    url = f"/api/lots/{lot.pk}/bids/"

    first = client_for(bidder).post(url, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    replay = client_for(bidder).post(url, {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    rejected = client_for(other_bidder).post(url, {"amount": "10.00"}, format="json")

    assert (first.status_code, replay.status_code, rejected.status_code) == (201, 201, 409)
    assert replay.json()["replayed"] is True
    assert rejected.json()["code"] == "bid_too_low"
    assert sample("auction_bids_accepted_total", kind="bid") == accepted + 1
    assert sample("auction_bids_rejected_total", kind="bid", code="bid_too_low") == too_low + 1


@pytest.mark.django_db
def test_buy_now_is_counted_apart(make_lot, bidder, client_for):
    lot = make_lot(buy_now_price=Decimal("100.00"))
    before = sample("auction_bids_accepted_total", kind="buy_now")
    unavailable = sample("auction_bids_rejected_total", kind="buy_now", code="lot_closed")

    assert client_for(bidder).post(f"/api/lots/{lot.pk}/buy-now/").status_code == 201
    assert client_for(bidder).post(f"/api/lots/{lot.pk}/buy-now/").status_code == 409

    assert sample("auction_bids_accepted_total", kind="buy_now") == before + 1
    assert sample("auction_bids_rejected_total", kind="buy_now", code="lot_closed") == unavailable + 1


@pytest.mark.django_db
def test_broadcast_latency_is_observed_after_commit(make_lot, bidder, django_capture_on_commit_callbacks):
    lot = make_lot()
    before = sample("auction_broadcast_seconds_count")

    with django_capture_on_commit_callbacks(execute=True):
        place_bid(lot_id=lot.pk, bidder=bidder, amount="10.00")

    assert sample("auction_broadcast_seconds_count") == before + 1
    assert sample("auction_broadcast_seconds_bucket", le="+Inf") >= 1


@pytest.mark.django_db(transaction=True)
async def test_open_websockets_are_a_gauge(make_lot, bidder):
    lot = await database_sync_to_async(make_lot)()
    token = await database_sync_to_async(access_token_for)(bidder)
    before = sample("auction_websockets_open", consumer="LotConsumer")
    communicator = WebsocketCommunicator(
        application, f"/ws/lots/{lot.pk}/?token={token}", headers=[(b"origin", b"http://localhost")]
    )

    connected, _ = await communicator.connect(timeout=5)
    during = sample("auction_websockets_open", consumer="LotConsumer")
    await communicator.disconnect(timeout=5)

    assert connected
    assert during == before + 1
    assert sample("auction_websockets_open", consumer="LotConsumer") == before


def test_metric_value_reads_the_exposition():
    text = '# TYPE a_total counter\na_total{code="x"} 3.0\na_total{code="y"} 1.0\n'

    assert metric_value(text, "a_total", {"code": "x"}) == 3.0
    assert metric_value(text, "a_total", {"code": "z"}) is None
