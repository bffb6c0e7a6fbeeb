"""E-mail for notifications: a queue in the notification rows, sent at least once.

The mailer is a worker of its own (it never shares the clock's rounds). It
claims due rows with SKIP LOCKED and leases them (`email_next_try_at` moves
past the send), so several mailers never send the same one at once and a
mailer that dies mid-send leaves it to be retried. A row is marked sent only
after the mail server took it; a failed send is retried with backoff, and
given up (`failed`, with the error) after `AUCTION_MAIL_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.utils import timezone

from bids.models import EmailState, Notification
from lots.wakeups import MAIL_CHANNEL
from lots.workers import Worker

logger = logging.getLogger(__name__)

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
# A claimed e-mail is not claimed again for this long: time enough to send it.
LEASE = timedelta(minutes=2)
# Retries wait 30 s, 1 min, 2 min, ... up to an hour.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)


def _pending(now: datetime):
    return Notification.objects.filter(email_state=EmailState.PENDING).exclude(email_next_try_at__gt=now)


@transaction.atomic
def _claim_due(limit: int, now: datetime) -> list[Notification]:
    batch = list(
        _pending(now).select_for_update(of=("self",), skip_locked=True).select_related("user").order_by("id")[:limit]
    )
    for notification in batch:
        notification.email_attempts += 1
        notification.email_next_try_at = now + LEASE
    Notification.objects.bulk_update(batch, ["email_attempts", "email_next_try_at"])
    return batch


def _wants_email(notification: Notification) -> bool:
    user = notification.user
    return bool(user.email_notifications and user.email and notification.type in SUBJECTS)


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


def _retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def _send_one(mail_connection, notification: Notification, now: datetime) -> bool:
    """Send one claimed notification and record the outcome; True if it was sent."""
    if not _wants_email(notification):
        Notification.objects.filter(pk=notification.pk).update(email_state=EmailState.SKIPPED, email_next_try_at=None)
        return False
    try:
        sent = mail_connection.send_messages([_message(notification)])
    except Exception as exc:
        sent, error = 0, f"{type(exc).__name__}: {exc}"
    else:
        error = "the mail server accepted no message"
    if sent:
        Notification.objects.filter(pk=notification.pk).update(
            email_state=EmailState.SENT, emailed_at=timezone.now(), email_next_try_at=None, email_error=""
        )
        return True
    if notification.email_attempts >= settings.AUCTION_MAIL_MAX_ATTEMPTS:
        logger.error(
            "e-mail for notification %s given up after %d attempts: %s",
            notification.pk,
            notification.email_attempts,
            error,
        )
        update = {"email_state": EmailState.FAILED, "email_next_try_at": None}
    else:
        update = {"email_next_try_at": now + _retry_delay(notification.email_attempts)}
    Notification.objects.filter(pk=notification.pk).update(email_error=error[:500], **update)
    return False


def send_due_emails(*, limit: int = 50, now: datetime | None = None) -> tuple[int, int]:
    """E-mail the notifications that are due; (sent, failed). Stops at the first batch that failed entirely.

    Each notification is marked sent only after the mail server took it.
    """
    sent = failed = 0
    while batch := _claim_due(limit, now or timezone.now()):
        mail_connection = get_connection()
        batch_sent = batch_failed = 0
        for notification in batch:
            if _send_one(mail_connection, notification, now or timezone.now()):
                batch_sent += 1
            elif notification.email_state == EmailState.PENDING and _wants_email(notification):
                batch_failed += 1
        sent, failed = sent + batch_sent, failed + batch_failed
        if len(batch) < limit or (batch_failed and not batch_sent):
            # The server is down: the rest wait for their retry rather than fail now too.
            break
    return sent, failed


def seconds_until_next_email(*, now: datetime | None = None) -> float:
    now = now or timezone.now()
    poll = settings.AUCTION_MAIL_POLL_SECONDS
    next_try = Notification.objects.filter(email_state=EmailState.PENDING).aggregate(at=Min("email_next_try_at"))["at"]
    if next_try is None:
        # Nothing waits for a retry (or only new ones, which are due now and
        # would have been sent): look again at the next poll.
        return poll
    return min(max((next_try - now).total_seconds(), 0.01), poll)


class MailWorker(Worker):
    """Sends due e-mail, then sleeps until the next retry, a poll, or a wake-up from this process."""

    channel = MAIL_CHANNEL

    def __init__(self) -> None:
        super().__init__(name="mailer")

    def run_round(self) -> float:
        sent, failed = send_due_emails()
        if sent or failed:
            logger.info("mailer: sent %d, failed %d", sent, failed)
        return seconds_until_next_email()
