from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q


class Auction(models.Model):
    """A sale: a catalogue of lots run together."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    requires_registration = models.BooleanField(
        default=False, help_text="Only approved participants may bid on this sale's lots."
    )
    auto_approve = models.BooleanField(default=False, help_text="Approve registrations at once.")
    stagger_seconds = models.PositiveIntegerField(
        default=0, help_text="When staggering, each lot ends this many seconds after the previous one."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True) | Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="auction_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class LotStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


MONEY = {"max_digits": 12, "decimal_places": 2}


class Lot(models.Model):
    """One item under the hammer. Its row is the lock every bid takes."""

    seller = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="lots_selling")
    auction = models.ForeignKey(Auction, on_delete=models.PROTECT, null=True, blank=True, related_name="lots")
    lot_number = models.PositiveIntegerField(null=True, blank=True, help_text="Its place in the sale's catalogue.")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    image = models.ImageField(upload_to="lots/", blank=True)
    currency = models.CharField(max_length=3)

    starting_price = models.DecimalField(**MONEY)
    reserve_price = models.DecimalField(**MONEY, null=True, blank=True)
    buy_now_price = models.DecimalField(**MONEY, null=True, blank=True)
    bid_increment = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="A fixed increment instead of the default table."
    )

    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(help_text="When bidding ends; soft close may move it up to the hard end.")
    hard_ends_at = models.DateTimeField(help_text="Soft close never moves the end past this.")
    soft_close_seconds = models.PositiveIntegerField(
        default=0, help_text="A bid in the last N seconds extends the end to now + N (0: off)."
    )

    status = models.CharField(max_length=10, choices=LotStatus.choices, default=LotStatus.DRAFT, db_index=True)
    current_price = models.DecimalField(**MONEY, null=True, blank=True)
    high_bidder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The leader's hidden maximum; never shown to anyone else.
    high_max_amount = models.DecimalField(**MONEY, null=True, blank=True)
    bid_count = models.PositiveIntegerField(default=0)
    winner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="lots_won"
    )
    final_price = models.DecimalField(**MONEY, null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Watchers are told once that the lot ends soon.
    ending_soon_sent_at = models.DateTimeField(null=True, blank=True)
    # One more with every public change; clients use it to find missed events.
    seq = models.PositiveBigIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ends_at", "id"]
        indexes = [models.Index(fields=["status", "ends_at"]), models.Index(fields=["status", "starts_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(starting_price__gt=0), name="lot_starting_price_positive"),
            models.CheckConstraint(
                condition=Q(reserve_price__isnull=True) | Q(reserve_price__gte=F("starting_price")),
                name="lot_reserve_at_least_start",
            ),
            models.CheckConstraint(
                condition=Q(buy_now_price__isnull=True) | Q(buy_now_price__gt=F("starting_price")),
                name="lot_buy_now_above_start",
            ),
            models.CheckConstraint(
                condition=Q(buy_now_price__isnull=True)
                | Q(reserve_price__isnull=True)
                | Q(buy_now_price__gte=F("reserve_price")),
                name="lot_buy_now_at_least_reserve",
            ),
            models.CheckConstraint(
                condition=Q(bid_increment__isnull=True) | Q(bid_increment__gt=0), name="lot_increment_positive"
            ),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="lot_ends_after_start"),
            models.CheckConstraint(condition=Q(hard_ends_at__gte=F("ends_at")), name="lot_hard_end_not_before_end"),
            models.CheckConstraint(
                condition=Q(current_price__isnull=True) | Q(current_price__gte=F("starting_price")),
                name="lot_price_at_least_start",
            ),
            models.CheckConstraint(
                condition=Q(high_max_amount__isnull=True) | Q(high_max_amount__gte=F("current_price")),
                name="lot_max_at_least_price",
            ),
            models.CheckConstraint(
                condition=Q(bid_count=0, current_price__isnull=True, high_bidder__isnull=True)
                | Q(bid_count__gt=0, current_price__isnull=False, high_bidder__isnull=False),
                name="lot_price_and_leader_with_bids",
            ),
            models.CheckConstraint(
                condition=Q(winner__isnull=True) | Q(status="closed", final_price__isnull=False),
                name="lot_winner_only_when_closed",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["closed", "cancelled"]) | Q(closed_at__isnull=False),
                name="lot_ended_has_closed_at",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def reserve_met(self) -> bool:
        if self.reserve_price is None:
            return True
        return self.current_price is not None and self.current_price >= self.reserve_price


class Watch(models.Model):
    """A user following a lot (a watchlist)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watches")
    lot = models.ForeignKey(Lot, on_delete=models.CASCADE, related_name="watches")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "watches"
        constraints = [models.UniqueConstraint(fields=["user", "lot"], name="watch_once_per_user")]

    def __str__(self) -> str:
        return f"{self.user.username} watches {self.lot.title}"


class RegistrationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    REVOKED = "revoked", "Revoked"


class Registration(models.Model):
    """A user's registration to bid in a sale, with their paddle number."""

    auction = models.ForeignKey(Auction, on_delete=models.CASCADE, related_name="registrations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="registrations")
    paddle_number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=RegistrationStatus.choices, default=RegistrationStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["auction", "paddle_number"]
        constraints = [
            models.UniqueConstraint(fields=["auction", "user"], name="registration_once_per_sale"),
            models.UniqueConstraint(fields=["auction", "paddle_number"], name="paddle_unique_in_sale"),
            models.CheckConstraint(condition=Q(paddle_number__gt=0), name="paddle_positive"),
        ]

    def __str__(self) -> str:
        return f"Paddle {self.paddle_number} ({self.user.username}) in {self.auction.title}"


class LotAlias(models.Model):
    """How a bidder is named to the public on one lot, fixed at their first bid and never changed.

    Their paddle ("Paddle 12") when they hold a registration in the lot's sale,
    else "Bidder N", N counting the lot's bidders in the order of their first bid.
    Only staff (and the seller, for the winner) see usernames.
    """

    lot = models.ForeignKey(Lot, on_delete=models.CASCADE, related_name="aliases")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The bidder's place in the order of first bids on the lot.
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=32)

    class Meta:
        verbose_name_plural = "lot aliases"
        ordering = ["lot", "number"]
        constraints = [
            models.UniqueConstraint(fields=["lot", "user"], name="lot_alias_once_per_bidder"),
            models.UniqueConstraint(fields=["lot", "number"], name="lot_alias_number_unique"),
            models.UniqueConstraint(fields=["lot", "label"], name="lot_alias_label_unique"),
            models.CheckConstraint(condition=Q(number__gt=0), name="lot_alias_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.user_id}) on lot {self.lot_id}"


class LotEvent(models.Model):
    """A public change of a lot, as broadcast, numbered by the lot's `seq`.

    Written in the same transaction as the change, so a reconnecting client
    can be sent exactly what it missed.
    """

    lot = models.ForeignKey(Lot, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32)
    # The frame exactly as sent: serialized once, replayed byte for byte.
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Moved from the bidding app: the tables keep their names.
        db_table = "bids_lotevent"
        ordering = ["lot", "seq"]
        constraints = [models.UniqueConstraint(fields=["lot", "seq"], name="lot_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} of {self.lot.title}"


class EmailState(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    # The user turned e-mail off, has no address, or the type has no e-mail.
    SKIPPED = "skipped"
    # Every attempt failed; `email_error` says why.
    FAILED = "failed"


class Notification(models.Model):
    """A private event for one user (OUTBID, WON, ...), stored with the change that caused it.

    It is pushed to the user's socket after commit, listed over REST, and
    e-mailed at least once by the mailer: a failed send stays pending and is
    tried again later (`email_next_try_at`), and is marked sent only once sent.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    lot = models.ForeignKey(Lot, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    type = models.CharField(max_length=32)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    # Database defaults too: processes of the previous release insert rows without these columns during a deploy.
    email_state = models.CharField(
        max_length=8, choices=EmailState.choices, default=EmailState.PENDING, db_default=EmailState.PENDING
    )
    email_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    # A pending e-mail is not tried before this (null: at once). A mailer that
    # claims it moves it past the send, so a mailer that died mid-send is
    # retried, never lost.
    email_next_try_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=500, blank=True, default="", db_default="")
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "bids_notification"
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["user", "-id"]),
            models.Index(
                fields=["email_next_try_at", "id"],
                condition=models.Q(email_state="pending"),
                name="notification_email_pending",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(email_state__in=["pending", "sent", "skipped", "failed"]),
                name="notification_email_state_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(email_state="sent", emailed_at__isnull=False)
                | (~models.Q(email_state="sent") & models.Q(emailed_at__isnull=True)),
                name="notification_emailed_at_iff_sent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} for {self.user_id}"
