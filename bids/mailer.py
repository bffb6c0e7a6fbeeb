"""E-mail for notifications: each stored notification is e-mailed at most once.

The clock calls `send_pending_emails`; rows are claimed with SKIP LOCKED and
marked before sending, so several clocks never send the same one twice.
"""

import time

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from bids.models import Notification

SUBJECTS = {
    "OUTBID": "You have been outbid on {title}",
    "WON": "You won {title}",
    "LOT_SOLD": "Sold: {title}",
    "LOT_UNSOLD": "Not sold: {title}",
    "ENDING_SOON": "Ending soon: {title}",
    "LOT_CANCELLED": "Cancelled: {title}",
    "BIDS_VOIDED": "Your bids on {title} were voided",
    "REGISTRATION_DECIDED": "Your registration for {title}",
}


@transaction.atomic
def _claim_pending(limit: int) -> list[Notification]:
    batch = list(
        Notification.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(emailed_at__isnull=True)
        .select_related("user")
        .order_by("id")[:limit]
    )
    if batch:
        Notification.objects.filter(pk__in=[n.pk for n in batch]).update(emailed_at=timezone.now())
    return batch


def _message(notification: Notification) -> EmailMultiAlternatives:
    payload = notification.payload
    site = settings.FRONTEND_URL.rstrip("/")
    context = {
        "n": notification,
        "user": notification.user,
        "p": payload,
        "lot_url": f"{site}/lots/{payload['lot_id']}/"
        if "lot_id" in payload
        else f"{site}/auctions/{payload['auction']}/",
    }
    subject = SUBJECTS[notification.type].format(title=notification.payload.get("title", "your lot"))
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("emails/notification.txt", context),
        to=[notification.user.email],
    )
    message.attach_alternative(render_to_string("emails/notification.html", context), "text/html")
    return message


def send_pending_emails(*, limit: int = 200, until: float | None = None) -> int:
    """E-mail unsent notifications to users who want e-mail; returns how many were sent.

    With `until` (a `time.monotonic()` value) no batch starts after it: the
    clock leaves the rest to its next round rather than hold back a close.
    """
    sent = 0
    while (until is None or time.monotonic() < until) and (batch := _claim_pending(limit)):
        messages = [_message(n) for n in batch if n.user.email_notifications and n.user.email and n.type in SUBJECTS]
        if messages:
            sent += get_connection().send_messages(messages) or 0
        if len(batch) < limit:
            break
    return sent


def has_pending_emails() -> bool:
    return Notification.objects.filter(emailed_at__isnull=True).exists()
