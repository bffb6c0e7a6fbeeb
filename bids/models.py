from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from lots.models import MONEY, Lot


class VoidReason(models.TextChoices):
    VOIDED = "voided", "voided by staff"
    SUPERSEDED = "superseded", "recomputed after a void"


class Bid(models.Model):
    """An accepted bid. Never deleted; only staff voiding a bidder marks rows void.

    Voiding a bidder's bids replays the lot's other submissions: rows from the
    first voided bid on are marked void (`voided` for the bidder's own,
    `superseded` for the others) and replaced by the rows the replay makes.
    """

    lot = models.ForeignKey(Lot, on_delete=models.PROTECT, related_name="bids")
    bidder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bids")
    # The visible price this bid stands at.
    amount = models.DecimalField(**MONEY)
    # The bidder's hidden ceiling for proxy bidding; never shown to others.
    max_amount = models.DecimalField(**MONEY, null=True, blank=True)
    # What the bidder sent, kept so a void can replay the submission; None on proxy rows.
    submitted_amount = models.DecimalField(**MONEY, null=True, blank=True)
    # Placed by the system for a proxy bidder answering a challenger.
    is_proxy = models.BooleanField(default=False)
    # The leader raised their hidden maximum: no public change, not in the history.
    raises_max_only = models.BooleanField(default=False)
    is_buy_now = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    # What the client asked for, to tell a retry from a reuse of its key.
    request_hash = models.CharField(max_length=64, blank=True)
    # The moment the bid was accepted: the same `now` its lot's end was checked against.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    void_reason = models.CharField(max_length=16, choices=VoidReason.choices, blank=True, default="")
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["lot", "-id"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="bid_amount_positive"),
            models.CheckConstraint(
                condition=Q(max_amount__isnull=True) | Q(max_amount__gte=F("amount")), name="bid_max_at_least_amount"
            ),
            models.UniqueConstraint(
                fields=["bidder", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="bid_idempotency_key_unique_per_bidder",
            ),
            models.CheckConstraint(
                condition=Q(is_proxy=False) | Q(idempotency_key__isnull=True), name="bid_proxy_has_no_key"
            ),
            models.CheckConstraint(
                condition=Q(is_proxy=True) | Q(submitted_amount__isnull=False), name="bid_own_has_submitted_amount"
            ),
            models.CheckConstraint(
                condition=Q(void_reason="", voided_at__isnull=True) | (~Q(void_reason="") & Q(voided_at__isnull=False)),
                name="bid_void_has_reason_and_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.lot.currency} by {self.bidder.username} on {self.lot.title}"


class ChatMessage(models.Model):
    """A message in a lot's room. Plain text: never rendered as HTML."""

    lot = models.ForeignKey(Lot, on_delete=models.CASCADE, related_name="chat_messages")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages")
    text = models.TextField()
    # Written by the lot's seller: their answers are marked as such.
    is_seller = models.BooleanField(default=False)
    hidden = models.BooleanField(default=False)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["lot", "-id"])]
        constraints = [
            models.CheckConstraint(condition=~Q(text=""), name="chat_text_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.user.username} on {self.lot.title}: {self.text[:40]}"
