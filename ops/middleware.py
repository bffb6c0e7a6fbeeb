"""Request middleware: request ids, the request log and counter, and the probes.

`RequestLogMiddleware` comes first: every response (static files and probes
included) carries `X-Request-ID`, is counted, and is logged once as JSON.
`ProbeMiddleware` comes next, before the host and HTTPS checks: orchestrators
and Prometheus call the probes by container address over plain HTTP.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import resolve

from ops import metrics
from ops.logs import lot_id_from_path, request_id_var

logger = logging.getLogger("auction_site.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's (or the proxy's) id is kept when it is short and plain.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
PROBE_PATHS = frozenset({"/api/health/", "/api/ready/", "/metrics"})


def request_id_for(request: HttpRequest) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id_for(request)
        token = request_id_var.set(request.request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            metrics.count_http_request(request.method, response.status_code)
            if request.path not in PROBE_PATHS or response.status_code >= 400:
                self._log(request, response, time.perf_counter() - started)
            return response
        finally:
            request_id_var.reset(token)

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, seconds: float) -> None:
        # request.path: never the query string, which may carry a ticket or token.
        level = logging.ERROR if response.status_code >= 500 else logging.INFO
        logger.log(
            level,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "event": "http.request",
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 1),
                "client": request.META.get("REMOTE_ADDR"),
                "lot_id": lot_id_from_path(request.path),
            },
        )


class ProbeMiddleware:
    """Serve the health, readiness and metrics views without the host and HTTPS checks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in PROBE_PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        response = match.func(request, *match.args, **match.kwargs)
        if hasattr(response, "render") and callable(response.render):
            response = response.render()
        return response
