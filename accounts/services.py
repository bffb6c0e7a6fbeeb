"""Account writes: registration, profile changes, passwords, the end of sessions, and WebSocket tickets."""

import logging
import uuid
from datetime import UTC, datetime
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.exceptions import SessionEnded
from ops import broadcasting
from ops.exceptions import InvalidInput

logger = logging.getLogger(__name__)

User = get_user_model()

WS_TICKET_SALT = "accounts.ws-ticket"


def account_group(user_id: int) -> str:
    """The room of every open socket of one user, on every process."""
    return f"account.{user_id}"


def _check_available(*, username: str, email: str) -> None:
    if User.objects.filter(email__iexact=email).exists():
        raise InvalidInput("email_taken", "An account with this e-mail address already exists.")
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput("username_taken", "This username is taken.")


@transaction.atomic
def register_user(*, username: str, email: str, password: str, first_name: str = "", last_name: str = ""):
    """Create a bidder account. Raises `email_taken` / `username_taken`."""
    _check_available(username=username, email=email)
    try:
        with transaction.atomic():
            return User.objects.create_user(
                username=username, email=email, password=password, first_name=first_name, last_name=last_name
            )
    except IntegrityError:
        # A concurrent registration committed the same address or name after
        # the check above; the unique index refused ours. Say which.
        _check_available(username=username, email=email)
        raise


def update_profile(*, user, current_password: str | None = None, **changes):
    """Change the user's own fields (`email`, names, `email_notifications`).

    A new e-mail address needs the current password: with a stolen session alone, an address
    changed then a password reset would take the account. Raises `password_required`,
    `wrong_password`, `email_taken`.
    """
    if "email" in changes and changes["email"].lower() != user.email.lower():
        _ensure_current_password(user, current_password, "to change your e-mail address")
    for field, value in changes.items():
        setattr(user, field, value)
    try:
        with transaction.atomic():
            user.save(update_fields=list(changes))
    except IntegrityError:
        # Another account took the address after the serializer's check; the
        # unique index refused ours.
        if "email" in changes and User.objects.filter(email__iexact=user.email).exclude(pk=user.pk).exists():
            raise InvalidInput("email_taken", "An account with this e-mail address already exists.") from None
        raise
    return user


def request_password_reset(*, email: str) -> None:
    """E-mail a one-time reset link if the address has an account; silent otherwise."""
    user = User.objects.filter(email__iexact=email, is_active=True).first()
    if user is None or not user.has_usable_password():
        return
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    context = {
        "user": user,
        "uid": uid,
        "token": token,
        "reset_url": f"{settings.FRONTEND_URL.rstrip('/')}/reset-password/?uid={uid}&token={token}",
    }
    send_mail(
        subject="Reset your password",
        message=render_to_string("emails/password_reset.txt", context),
        html_message=render_to_string("emails/password_reset.html", context),
        from_email=None,
        recipient_list=[user.email],
    )


@transaction.atomic
def confirm_password_reset(*, uid: str, token: str, new_password: str):
    """Set a new password from a reset token; logs out every refresh token.

    Raises `invalid_reset_token`.
    """
    try:
        user = User.objects.select_for_update().get(pk=force_str(urlsafe_base64_decode(uid)))
    except (User.DoesNotExist, ValueError, TypeError, OverflowError):
        user = None
    if user is None or not default_token_generator.check_token(user, token):
        raise InvalidInput("invalid_reset_token", "The reset link is invalid or has expired.")
    return change_password(user=user, new_password=new_password)


@transaction.atomic
def change_password(*, user, new_password: str | None):
    """Set (None: unset) the user's password and end every session: refresh tokens, open sockets."""
    if new_password is None:
        user.set_unusable_password()
    else:
        user.set_password(new_password)
    user.save(update_fields=["password"])
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=outstanding_token) for outstanding_token in outstanding], ignore_conflicts=True
    )
    end_sessions(user_ids=[user.pk])
    return user


@transaction.atomic
def _ensure_current_password(user, current_password: str | None, purpose: str) -> None:
    """Raises `password_required` or `wrong_password`, with the error on the `current_password` field."""
    if not current_password:
        message = f"Enter your current password {purpose}."
        raise InvalidInput("password_required", message, errors={"current_password": [message]})
    if not user.check_password(current_password):
        message = "Your current password is not right."
        raise InvalidInput("wrong_password", message, errors={"current_password": [message]})


def change_own_password(*, user, current_password: str, new_password: str) -> RefreshToken:
    """Check the current password, set the new one and end every session; returns a new session for the caller.

    Locks the user's row. Raises `wrong_password`.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.check_password(current_password):
        raise InvalidInput("wrong_password", "Your current password is not right.")
    change_password(user=user, new_password=new_password)
    return RefreshToken.for_user(user)


@transaction.atomic
def deactivate_user(*, user_id: int) -> None:
    """Deactivate the account and close its open sockets (the services refuse its writes: `account_inactive`)."""
    User.objects.filter(pk=user_id).update(is_active=False)
    end_sessions(user_ids=[user_id])


@transaction.atomic
def log_out(*, refresh: str) -> None:
    """Blacklist the refresh token and close the user's open sockets. Raises simplejwt's `TokenError`."""
    token = RefreshToken(refresh)
    token.blacklist()
    # simplejwt stores the id as a string.
    end_sessions(user_ids=[User._meta.pk.to_python(token[jwt_settings.USER_ID_CLAIM])])


def end_sessions(*, user_ids: list[int]) -> None:
    """Sockets of these users may no longer write, and close with 4401 on every process after the commit."""
    User.objects.filter(pk__in=user_ids).update(session_epoch=F("session_epoch") + 1)
    transaction.on_commit(lambda: close_sockets(user_ids=user_ids))


def close_sockets(*, user_ids: list[int]) -> None:
    """Tell every open socket of these users, on every process, to close with 4401."""
    try:
        broadcasting.publish([{"room": account_group(user_id), "kind": "close", "text": ""} for user_id in user_ids])
    except Exception:
        # Redis away: the sockets close at their token's expiry, and the services
        # refuse their writes meanwhile (`ensure_session_open`).
        logger.warning("closing the sockets of %d users failed", len(user_ids), exc_info=True)


def ensure_session_open(*, user) -> None:
    """Reads the user's row afresh: refuses a user deactivated, deleted, or whose sessions ended since `user` was loaded.

    Raises `account_inactive`, `session_ended`.
    """
    row = User.objects.filter(pk=user.pk).values("is_active", "password", "session_epoch").first()
    ensure_session_checks_pass(
        session_active=row is not None and row["is_active"],
        session_current=row is not None
        and row["password"] == user.password
        and row["session_epoch"] == user.session_epoch,
    )


def ensure_session_checks_pass(*, session_active: bool, session_current: bool) -> None:
    """Raises `account_inactive` or `session_ended`: the user's row is inactive (or gone), or no longer matches
    the password and session epoch it was loaded with."""
    if not session_active:
        raise SessionEnded("account_inactive", "This account is no longer active.")
    if not session_current:
        raise SessionEnded("session_ended", "This session has ended; log in again.")


class Ticket(NamedTuple):
    user_id: int
    session_epoch: int
    expires_at: datetime


def issue_ws_ticket(*, user, expires_at: datetime | None = None) -> str:
    """A signed, single-use ticket that opens one WebSocket within the TTL.

    The socket lives until `expires_at`: the expiry of the access token the
    ticket was bought with (default: an access token's lifetime from now).
    """
    if expires_at is None:
        expires_at = timezone.now() + jwt_settings.ACCESS_TOKEN_LIFETIME
    payload = {
        "u": user.pk,
        "s": getattr(user, "session_epoch", 0),
        "e": int(expires_at.timestamp()),
        "j": uuid.uuid4().hex,
    }
    return signing.dumps(payload, salt=WS_TICKET_SALT, compress=True)


async def aredeem_ws_ticket(*, ticket: str) -> Ticket | None:
    """What a ticket was issued for, or None if bad, expired (itself or its token) or used."""
    try:
        payload = signing.loads(ticket, salt=WS_TICKET_SALT, max_age=settings.WS_TICKET_TTL_SECONDS)
    except signing.BadSignature:
        return None
    expires_at = datetime.fromtimestamp(payload.get("e", 0), tz=UTC)
    if expires_at <= timezone.now():
        return None
    # `add` is atomic (SET NX on Redis), so of two processes racing to use a
    # ticket exactly one wins.
    first_use = await cache.aadd(f"ws-ticket:{payload['j']}", 1, timeout=settings.WS_TICKET_TTL_SECONDS + 5)
    return Ticket(payload["u"], payload.get("s", 0), expires_at) if first_use else None
