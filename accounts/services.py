"""Account writes: registration, profile changes, password reset and WebSocket tickets."""

import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from auction_site.exceptions import InvalidInput

User = get_user_model()

WS_TICKET_SALT = "accounts.ws-ticket"


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


def update_profile(*, user, **changes):
    """Change the user's own fields (`email`, names, `email_notifications`). Raises `email_taken`."""
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
    user.set_password(new_password)
    user.save(update_fields=["password"])
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=outstanding_token) for outstanding_token in outstanding], ignore_conflicts=True
    )
    return user


def issue_ws_ticket(*, user) -> str:
    """A signed, single-use ticket that opens one WebSocket within the TTL."""
    return signing.dumps({"u": user.pk, "j": uuid.uuid4().hex}, salt=WS_TICKET_SALT, compress=True)


async def aredeem_ws_ticket(*, ticket: str) -> int | None:
    """The user id a ticket was issued for, or None if bad, expired or used."""
    try:
        payload = signing.loads(ticket, salt=WS_TICKET_SALT, max_age=settings.WS_TICKET_TTL_SECONDS)
    except signing.BadSignature:
        return None
    # `add` is atomic (SET NX on Redis), so of two processes racing to use a
    # ticket exactly one wins.
    first_use = await cache.aadd(f"ws-ticket:{payload['j']}", 1, timeout=settings.WS_TICKET_TTL_SECONDS + 5)
    return payload["u"] if first_use else None
