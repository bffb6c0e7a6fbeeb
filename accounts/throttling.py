"""Throttles of the ways in: log-ins, registrations and password-reset requests.

Every attempt counts against its client address and, for log-ins and reset
requests, against the account it names (so spreading guesses over many
addresses does not help), with `take_allowance`'s fixed windows in the cache:
in production Redis, so every process counts against the same limits,
atomically. An attempt over a limit is refused before any password is checked,
a right one too. While Redis is away nothing passes uncounted: the REST
endpoints answer 503 `service_unavailable`, the HTML login pages a 503 page.

The address is `REMOTE_ADDR`: the peer's, or X-Forwarded-For's when daphne
runs with `--proxy-headers` (behind nginx); a header a client sends itself
never chooses its address.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.backends import find_user
from ops.ratelimit import REDIS_AWAY, parse_rate, take_allowance

# The longest identifier worth looking up: an e-mail address (usernames stop at 150).
MAX_IDENTIFIER_LENGTH = 254


def client_address(request: HttpRequest | Request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _take(key: str, rate: str) -> int:
    limit, window = parse_rate(rate)
    return take_allowance(key, limit=limit, window=window, fail_open=False)


def _digest(text: str) -> str:
    return hashlib.sha256(text.strip().lower().encode()).hexdigest()[:32]


def _account_key(identifier: str) -> str:
    """One key per account however it is named (username or e-mail address); unknown names by their digest."""
    user = find_user(identifier) if len(identifier) <= MAX_IDENTIFIER_LENGTH else None
    return f"user:{user.pk}" if user is not None else f"name:{_digest(identifier)}"


def take_login_attempt(*, address: str, username: object) -> int:
    """Count one log-in attempt per address (`THROTTLE_AUTH`) and per account (`THROTTLE_LOGIN_ACCOUNT`).

    Returns 0 when it may proceed, else the seconds to wait. Raises the Redis error while Redis is away.
    """
    wait = _take(f"auth-ip:{address}", settings.THROTTLE_AUTH)
    if wait or not isinstance(username, str) or not username.strip():
        return wait
    return _take(f"login-account:{_account_key(username)}", settings.THROTTLE_LOGIN_ACCOUNT)


def take_password_reset_request(*, address: str, email: object) -> int:
    """Count one reset request per address and per e-mail address (`THROTTLE_PASSWORD_RESET` each)."""
    wait = _take(f"reset-ip:{address}", settings.THROTTLE_PASSWORD_RESET)
    if wait or not isinstance(email, str) or not email.strip():
        return wait
    return _take(f"reset-email:{_digest(email)}", settings.THROTTLE_PASSWORD_RESET)


# --- REST: DRF throttles (429 `throttled` with Retry-After) -------------------------------------


def _field(request: Request, name: str) -> object:
    data = request.data
    return data.get(name) if hasattr(data, "get") else None


class _AllowanceThrottle(BaseThrottle):
    def allow_request(self, request: Request, view) -> bool:
        self._wait = self.take(request)
        return self._wait == 0

    def take(self, request: Request) -> int:
        raise NotImplementedError

    def wait(self) -> float | None:
        return self._wait


class LoginThrottle(_AllowanceThrottle):
    def take(self, request: Request) -> int:
        return take_login_attempt(address=client_address(request), username=_field(request, "username"))


class PasswordChangeThrottle(_AllowanceThrottle):
    """Guesses of the current password count as log-in attempts on the account (throttles run after authentication)."""

    def take(self, request: Request) -> int:
        return take_login_attempt(address=client_address(request), username=request.user.get_username())


class EmailChangeThrottle(PasswordChangeThrottle):
    """A new e-mail address asks for the current password: its guesses count as log-in attempts too."""

    def take(self, request: Request) -> int:
        if request.method != "PATCH" or _field(request, "email") is None:
            return 0
        return super().take(request)


class RegistrationThrottle(_AllowanceThrottle):
    """Registrations share the log-ins' per-address allowance."""

    def take(self, request: Request) -> int:
        return _take(f"auth-ip:{client_address(request)}", settings.THROTTLE_AUTH)


class PasswordResetThrottle(_AllowanceThrottle):
    def take(self, request: Request) -> int:
        return take_password_reset_request(address=client_address(request), email=_field(request, "email"))


# --- HTML login pages (the admin's, the browsable API's) ----------------------------------------


def throttle_login_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Count each POST to a Django login form like a REST log-in; over a limit, a 429 page with Retry-After."""

    @functools.wraps(view)
    def throttled(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST":
            try:
                wait = take_login_attempt(address=client_address(request), username=request.POST.get("username"))
            except REDIS_AWAY:
                return _refusal(request, status=503, wait=2)
            if wait:
                return _refusal(request, status=429, wait=wait)
        return view(request, *args, **kwargs)

    return throttled


def _refusal(request: HttpRequest, *, status: int, wait: int) -> HttpResponse:
    response = render(request, "throttled.html", {"status": status, "wait": wait}, status=status)
    response["Retry-After"] = str(wait)
    return response
