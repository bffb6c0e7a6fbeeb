"""E-mail for notifications: a queue in the notification rows, sent at least once.

The mailer is a worker of its own (it never shares the clock's rounds). It
claims due rows with SKIP LOCKED and leases them (`email_next_try_at` moves
past the send), so several mailers never send the same one at once and a
mailer that dies mid-send leaves it to be retried. A row is marked sent only
after the mail server took it; a failed send is retried with backoff, and
given up (`failed`, with the error) after `AUCTION_MAIL_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Min
from django.template.loader import render_to_string
from django.utils import timezone

from lots.events import EventType
from lots.models import EmailState, Notification
from lots.pricing import money_text
from lots.wakeups import MAIL_CHANNEL
from lots.workers import Worker

logger = logging.getLogger(__name__)

SUBJECTS = {
    EventType.OUTBID: "You have been outbid on {title}",
    EventType.WON: "You won {title}",
    EventType.LOT_SOLD: "Sold: {title}",
    EventType.LOT_UNSOLD: "Not sold: {title}",
    EventType.ENDING_SOON: "Ending soon: {title}",
    EventType.LOT_CANCELLED: "Cancelled: {title}",
    EventType.BIDS_VOIDED: "Your bids on {title} were voided",
    EventType.REGISTRATION_DECIDED: "Your registration for {title}",
}
# The payload fields that hold money; a payload with any of them carries its `currency`.
AMOUNT_FIELDS = ("current_price", "min_next_bid", "final_price")
# A claimed e-mail is not claimed again for this long; each send renews it first.
LEASE = timedelta(minutes=2)
# E-mails claimed at once (and sent over one connection).
BATCH = 10
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
        # The amounts with their currency, in its places ("JPY 1,200"): a bare "1200.00" names no currency.
        "money": {
            key: money_text(payload[key], payload["currency"]) for key in AMOUNT_FIELDS if payload.get(key) is not None
        },
        "lot_url": f"{site}/lots/{payload['lot_id']}/"
        if "lot_id" in payload
        else f"{site}/auctions/{payload['auction']}/",
        "settings_url": f"{site}/account/",
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


def _claimed(notification: Notification):
    """The row, while this mailer's claim on it stands: nobody re-claimed it after the lease ran out."""
    return Notification.objects.filter(
        pk=notification.pk, email_state=EmailState.PENDING, email_attempts=notification.email_attempts
    )


def _release(notifications: list[Notification]) -> None:
    """Hand back claims not tried: due again at once, their attempt not counted."""
    for notification in notifications:
        _claimed(notification).update(email_next_try_at=None, email_attempts=notification.email_attempts - 1)


def _send_one(mail_connection, notification: Notification, now: datetime) -> str:
    """Send one claimed notification and record the outcome: `sent`, `skipped`, `failed` or `lost` (claimed by another)."""
    if not _wants_email(notification):
        _claimed(notification).update(email_state=EmailState.SKIPPED, email_next_try_at=None)
        return "skipped"
    # The claim is renewed just before the send (EMAIL_TIMEOUT bounds one send,
    # well within the lease): a mailer whose claim ran out sends nothing.
    if not _claimed(notification).update(email_next_try_at=timezone.now() + LEASE):
        return "lost"
    try:
        sent = mail_connection.send_messages([_message(notification)])
    except Exception as exc:
        sent, error = 0, f"{type(exc).__name__}: {exc}"
    else:
        error = "the mail server accepted no message"
    if sent:
        _claimed(notification).update(
            email_state=EmailState.SENT, emailed_at=timezone.now(), email_next_try_at=None, email_error=""
        )
        return "sent"
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
    _claimed(notification).update(email_error=error[:500], **update)
    return "failed"


def send_due_emails(
    *, limit: int = BATCH, now: datetime | None = None, stopping: Callable[[], bool] = lambda: False
) -> tuple[int, int]:
    """E-mail the notifications that are due, over one connection a batch; (sent, failed).

    Each is marked sent only after the mail server took it. At the first
    failed send the server is taken to be down: the rest of the batch is
    handed back for later, and so is whatever was not tried when `stopping()`.
    """
    sent = failed = 0
    while not stopping() and (batch := _claim_due(limit, now or timezone.now())):
        mail_connection = get_connection()
        with contextlib.suppress(Exception):
            # One connection for the batch; a server that refuses fails each send below instead.
            mail_connection.open()
        try:
            for position, notification in enumerate(batch):
                if stopping():
                    _release(batch[position:])
                    return sent, failed
                outcome = _send_one(mail_connection, notification, now or timezone.now())
                sent += outcome == "sent"
                if outcome == "failed":
                    failed += 1
                    _release(batch[position + 1 :])
                    return sent, failed
        finally:
            with contextlib.suppress(Exception):
                mail_connection.close()
        if len(batch) < limit:
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
    listens_on_database = False

    def __init__(self) -> None:
        super().__init__(name="mailer")

    def run_round(self) -> float:
        sent, failed = send_due_emails(stopping=self.stopping)
        if sent or failed:
            logger.info("mailer: sent %d, failed %d", sent, failed)
        return seconds_until_next_email()
