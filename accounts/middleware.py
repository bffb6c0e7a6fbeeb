"""WebSocket authentication: a JWT, a single-use ticket, or the access cookie.

Credentials are checked with simplejwt's own machinery. No credentials make
an anonymous user; bad ones (invalid, expired, reused) refuse the handshake
with close code 4401 so the client knows to fetch fresh ones. Tokens are
never logged.
"""

from datetime import UTC, datetime
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import TokenError

from accounts.services import aredeem_ws_ticket

CLOSE_UNAUTHORIZED = 4401


class CredentialsRefused(Exception):
    pass


@database_sync_to_async
def _user_from_access_token(raw_token: str):
    authentication = JWTAuthentication()
    try:
        validated = authentication.get_validated_token(raw_token.encode())
        user = authentication.get_user(validated)
    except (AuthenticationFailed, TokenError) as exc:
        raise CredentialsRefused from exc
    return user, datetime.fromtimestamp(validated["exp"], tz=UTC)


@database_sync_to_async
def _active_user(user_id: int, session_epoch: int):
    """The ticket's user, unless deactivated or logged out (password changed...) since it was issued."""
    users = get_user_model()._default_manager
    user = users.filter(pk=user_id, is_active=True, session_epoch=session_epoch).first()
    if user is None:
        raise CredentialsRefused
    return user


async def _authenticate(scope) -> tuple[object, datetime | None]:
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if ticket := params.get("ticket", [""])[0]:
        redeemed = await aredeem_ws_ticket(ticket=ticket)
        if redeemed is None:
            raise CredentialsRefused
        # The socket lives no longer than the access token the ticket was bought with.
        return await _active_user(redeemed.user_id, redeemed.session_epoch), redeemed.expires_at
    if token := params.get("token", [""])[0]:
        return await _user_from_access_token(token)
    if cookie := scope.get("cookies", {}).get(settings.JWT_ACCESS_COOKIE):
        return await _user_from_access_token(cookie)
    return AnonymousUser(), None


async def accept_and_close(receive, send, code: int) -> None:
    """Refuse a socket with `code`.

    Accept, then close: a close before accept reaches browsers as a bare
    HTTP 403 and the client could not tell why it was refused.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code})


class JWTAuthMiddleware(BaseMiddleware):
    """Sets `scope["user"]` and `scope["auth_expires_at"]` (None: anonymous, no expiry)."""

    async def __call__(self, scope, receive, send):
        try:
            user, expires_at = await _authenticate(scope)
        except CredentialsRefused:
            return await accept_and_close(receive, send, CLOSE_UNAUTHORIZED)
        scope = dict(scope, user=user, auth_expires_at=expires_at)
        return await super().__call__(scope, receive, send)


def JWTAuthMiddlewareStack(inner):
    return CookieMiddleware(JWTAuthMiddleware(inner))
