"""Prometheus metrics of this process, and the protected `/metrics` endpoint.

Each server process counts its own traffic: scrape every web process (or
container) directly, not through the proxy. The instruments are incremented
in one clearly marked place each: `RequestLogMiddleware` (HTTP requests),
`count_bids` on the bid services, the consumers' connect and disconnect
(open sockets), `realtime.origins` (handshakes it refused) and
`lots.events.broadcast_many` (broadcasts).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from ops.exceptions import DomainError

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter("auction_http_requests", "HTTP requests answered, by method and status.", ["method", "status"])
BIDS_ACCEPTED = Counter("auction_bids_accepted", "Bids accepted (idempotent replays excluded).", ["kind"])
BIDS_REJECTED = Counter("auction_bids_rejected", "Bids refused, by error code.", ["kind", "code"])
BIDS_WAITING = Gauge("auction_bids_waiting", "Bids waiting in this process for their lot's next transaction.")
WEBSOCKETS_OPEN = Gauge("auction_websockets_open", "WebSocket connections open in this process.", ["consumer"])
WEBSOCKETS_REFUSED = Counter(
    "auction_websockets_refused", "WebSocket handshakes refused by the origin check, by reason.", ["reason"]
)
BROADCAST_SECONDS = Histogram(
    "auction_broadcast_seconds",
    "Time to hand one committed change's events to the fan-out (Redis).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def count_http_request(method: str, status: int) -> None:
    HTTP_REQUESTS.labels(method if method in HTTP_METHODS else "other", str(status)).inc()


def count_bid_result(kind: str, result: object) -> None:
    """Count one bid's result: accepted (a replay excluded), or refused by its `code`."""
    if isinstance(result, DomainError):
        BIDS_REJECTED.labels(kind, result.code).inc()
    elif not isinstance(result, Exception) and not getattr(result, "replayed", False):
        BIDS_ACCEPTED.labels(kind).inc()


def count_bids(kind: str) -> Callable:
    """Decorate a bid service: count what it accepted, and what it refused by `code`."""

    def decorate(service: Callable) -> Callable:
        @functools.wraps(service)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                outcome = service(*args, **kwargs)
            except DomainError as exc:
                BIDS_REJECTED.labels(kind, exc.code).inc()
                raise
            if not getattr(outcome, "replayed", False):
                BIDS_ACCEPTED.labels(kind).inc()
            return outcome

        return counted

    return decorate


# --- The endpoint ---------------------------------------------------------------


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in settings.METRICS_ALLOWED_IPS]


def _from_allowed_address(request: HttpRequest) -> bool:
    # A request relayed by the proxy comes from the proxy's (internal)
    # address: only direct connections are judged by address.
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


def _has_token(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; from METRICS_ALLOWED_IPS directly, or with `Bearer <METRICS_TOKEN>`."""
    if not (_has_token(request) or _from_allowed_address(request)):
        return JsonResponse({"code": "forbidden", "detail": "Metrics are for internal scrapers."}, status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
