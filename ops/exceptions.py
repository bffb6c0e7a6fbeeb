"""Domain errors and the REST framework's error format.

Every error a client can meet carries a machine-readable `code`; people
read `detail`. Services raise `DomainError` subclasses; the handler below
turns them, and DRF's own errors, into `{"code": ..., "detail": ...}`.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the domain refused the request."""

    status_code = status.HTTP_409_CONFLICT

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.message, **self.extra}


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN


class InvalidInput(DomainError):
    status_code = status.HTTP_400_BAD_REQUEST


class RateLimited(DomainError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS


class Unavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def _first_code(codes: Any) -> str:
    """The first error code in DRF's nested `get_codes()` structure."""
    if isinstance(codes, dict):
        for value in codes.values():
            return _first_code(value)
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    return str(codes) if codes else "invalid"


def _first_message(detail: Any) -> str:
    """The first human-readable message in DRF's nested error detail."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            message = _first_message(value)
            if field == "non_field_errors" or message.startswith(field):
                return message
            return f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail) or "Invalid input."


def _unavailable_service(exc: Exception) -> str | None:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "database"
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return "redis"
    return None


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        retry_after = exc.extra.get("retry_after")
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        return Response(exc.as_dict(), status=exc.status_code, headers=headers)
    unavailable = _unavailable_service(exc)
    if unavailable is not None:
        # The database or Redis (cache, throttles, tickets) is unreachable or
        # restarting: tell the client to retry rather than answering 500.
        logger.warning("%s unavailable: %s", unavailable, type(exc).__name__)
        detail = "The database is unavailable" if unavailable == "database" else "A backing service is unavailable"
        return Response(
            {"code": "service_unavailable", "detail": f"{detail}; retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "2"},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "code": _first_code(exc.get_codes()),
            "detail": _first_message(exc.detail),
            "errors": exc.detail,
        }
    elif isinstance(exc.detail, dict) and "detail" in exc.detail:
        # simplejwt's errors carry their own {"detail", "code", ...} dict.
        response.data = {
            "code": str(exc.detail.get("code") or _first_code(exc.get_codes())),
            "detail": str(exc.detail["detail"]),
        }
    else:
        response.data = {"code": _first_code(exc.get_codes()), "detail": str(exc.detail)}
    return response


# --- Errors Django answers before (or instead of) a DRF view -----------------
# A URL no route matches (`/api/lots/abc/`), a request Django itself refuses,
# an uncaught exception: under /api/ the answer keeps the API's error format;
# the pages keep Django's HTML. (With DEBUG on, Django shows its debug pages.)


def _api_error(request: HttpRequest, status_code: int, code: str, detail: str) -> HttpResponse | None:
    if request.path.startswith("/api/"):
        return JsonResponse({"code": code, "detail": detail}, status=status_code)
    return None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, 400, "bad_request", "Malformed request.") or defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, 404, "not_found", "No such endpoint.") or defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    return _api_error(request, 500, "server_error", "Internal error.") or defaults.server_error(request)
