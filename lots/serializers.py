from django.conf import settings
from django.core.validators import slug_re
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from lots import pricing
from lots.events import lot_min_next_bid
from lots.fields import MoneyField
from lots.models import Auction, Lot, LotStatus, Notification, Registration
from lots.selectors import bidding_barred, effective_status, effective_winner, get_aliases, list_visible_lots

ALIAS_FIELD = {
    "type": "string",
    "nullable": True,
    "description": 'A bidder\'s public alias on this lot: "Paddle 12" (their paddle in the sale) or "Bidder 3" '
    "(the third to bid on the lot); fixed at their first bid. Frames name bidders the same way.",
}
USERNAME_FIELD = {"type": "string", "nullable": True}


def viewer_of(serializer: serializers.Serializer):
    """Who the representation is for: the socket's user (`viewer`) or the request's; None if unknown."""
    return serializer.context.get("viewer") or getattr(serializer.context.get("request"), "user", None)


def alias_on(lot: Lot, user_id: int | None, annotated: str) -> str | None:
    """The alias of `user_id` on the lot, from the selector's annotation when present, else read."""
    if user_id is None:
        return None
    if hasattr(lot, annotated):
        return getattr(lot, annotated)
    return get_aliases(lot_id=lot.pk, user_ids=[user_id]).get(user_id)


class LotSerializer(serializers.ModelSerializer):
    """A lot's public state: the same in REST, LOT_STATUS and the web page.

    Bidders appear by their alias on the lot; `my_alias` tells a viewer which
    one is theirs. Usernames only for staff, and the winner's for the seller.
    """

    seller = serializers.SerializerMethodField()
    high_bidder = serializers.SerializerMethodField()
    winner = serializers.SerializerMethodField()
    my_alias = serializers.SerializerMethodField()
    high_bidder_username = serializers.SerializerMethodField()
    winner_username = serializers.SerializerMethodField()
    auction = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    auction_title = serializers.CharField(source="auction.title", read_only=True, allow_null=True)
    starting_price = MoneyField()
    current_price = MoneyField(allow_null=True)
    buy_now_price = MoneyField(allow_null=True)
    bid_increment = MoneyField(allow_null=True)
    final_price = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    currency_places = serializers.SerializerMethodField()
    min_next_bid = serializers.SerializerMethodField()
    reserve_met = serializers.BooleanField(read_only=True)
    has_reserve = serializers.SerializerMethodField()
    reserve_price = serializers.SerializerMethodField()
    requires_registration = serializers.SerializerMethodField()
    bidding_barred = serializers.SerializerMethodField()

    class Meta:
        model = Lot
        fields = [
            "id",
            "title",
            "description",
            "image",
            "status",
            "currency",
            "currency_places",
            "auction",
            "auction_title",
            "lot_number",
            "seller",
            "starting_price",
            "current_price",
            "min_next_bid",
            "bid_count",
            "high_bidder",
            "high_bidder_username",
            "my_alias",
            "has_reserve",
            "reserve_met",
            "reserve_price",
            "buy_now_price",
            "bid_increment",
            "starts_at",
            "ends_at",
            "hard_ends_at",
            "soft_close_seconds",
            "requires_registration",
            "bidding_barred",
            "winner",
            "winner_username",
            "final_price",
            "closed_at",
            "seq",
        ]
        read_only_fields = fields

    def get_seller(self, lot: Lot) -> str:
        return lot.seller.username

    @extend_schema_field(ALIAS_FIELD)
    def get_high_bidder(self, lot: Lot) -> str | None:
        return alias_on(lot, lot.high_bidder_id, "high_bidder_alias")

    # A lot read after its end shows its outcome even before a clock settles it.

    def _now(self):
        return self.context.get("now") or timezone.now()

    @extend_schema_field(serializers.ChoiceField(choices=LotStatus.choices))
    def get_status(self, lot: Lot) -> str:
        return effective_status(lot, now=self._now())

    @extend_schema_field(ALIAS_FIELD)
    def get_winner(self, lot: Lot) -> str | None:
        if lot.winner_id:
            return alias_on(lot, lot.winner_id, "winner_alias")
        # Ended, not yet settled: its leader (named by the same alias) wins.
        winner = effective_winner(lot, now=self._now())
        return alias_on(lot, winner.pk, "high_bidder_alias") if winner else None

    @extend_schema_field({"type": "string", "format": "decimal", "nullable": True})
    def get_final_price(self, lot: Lot) -> str | None:
        if lot.final_price is not None:
            return f"{lot.final_price:.2f}"
        return f"{lot.current_price:.2f}" if effective_winner(lot, now=self._now()) else None

    @extend_schema_field(
        {
            "type": "string",
            "nullable": True,
            "description": "Your own alias on this lot (null until you bid): the bids and frames naming it are yours.",
        }
    )
    def get_my_alias(self, lot: Lot) -> str | None:
        viewer = viewer_of(self)
        if viewer is None or not viewer.is_authenticated:
            return None
        return alias_on(lot, viewer.pk, "my_alias")

    @extend_schema_field({**USERNAME_FIELD, "description": "Staff only; null for everyone else."})
    def get_high_bidder_username(self, lot: Lot) -> str | None:
        viewer = viewer_of(self)
        if lot.high_bidder_id is None or viewer is None or not viewer.is_staff:
            return None
        return lot.high_bidder.username

    @extend_schema_field({**USERNAME_FIELD, "description": "Staff and the lot's seller only; null for everyone else."})
    def get_winner_username(self, lot: Lot) -> str | None:
        viewer = viewer_of(self)
        winner = effective_winner(lot, now=self._now())
        if winner is None or viewer is None or not (viewer.is_staff or viewer.pk == lot.seller_id):
            return None
        return winner.username

    @extend_schema_field({"type": "string", "format": "decimal"})
    def get_min_next_bid(self, lot: Lot) -> str:
        return f"{lot_min_next_bid(lot):.2f}"

    @extend_schema_field(
        {
            "type": "string",
            "enum": ["own_lot", "staff_cannot_bid"],
            "nullable": True,
            "description": "Why you may never bid on this lot (your own lot; a staff account): the code a bid would "
            "be refused with. Null if nothing bars you, or when not logged in.",
        }
    )
    def get_bidding_barred(self, lot: Lot) -> str | None:
        viewer = viewer_of(self)
        if viewer is None or not viewer.is_authenticated:
            return None
        return bidding_barred(lot, viewer)

    @extend_schema_field({"type": "integer", "description": "Decimals the lot's currency takes (0 for JPY)."})
    def get_currency_places(self, lot: Lot) -> int:
        return pricing.currency_places(lot.currency)

    def get_requires_registration(self, lot: Lot) -> bool:
        return bool(lot.auction_id and lot.auction.requires_registration)

    def get_has_reserve(self, lot: Lot) -> bool:
        return lot.reserve_price is not None

    @extend_schema_field(
        {"type": "string", "format": "decimal", "nullable": True, "description": "Only shown to the seller and staff."}
    )
    def get_reserve_price(self, lot: Lot) -> str | None:
        user = viewer_of(self)
        if lot.reserve_price is None or user is None or not (user.is_staff or user.pk == lot.seller_id):
            return None
        return f"{lot.reserve_price:.2f}"


class SaleSlugField(serializers.SlugRelatedField):
    """A sale by its slug; text that no slug could be (a NUL byte, say) is refused before any query."""

    def to_internal_value(self, data):
        if (
            not isinstance(data, str)
            or not slug_re.fullmatch(data)
            or len(data) > Auction._meta.get_field("slug").max_length
        ):
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data)[:100])
        return super().to_internal_value(data)


class LotWriteSerializer(serializers.Serializer):
    """What a seller may set; the service applies the rules."""

    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    image = serializers.ImageField(required=False, allow_null=True)
    currency = serializers.ChoiceField(choices=sorted(pricing.currencies()), default=pricing.default_currency)
    auction = SaleSlugField(
        slug_field="slug",
        queryset=Auction.objects.all(),
        required=False,
        allow_null=True,
        help_text="Staff only; it cannot change once the lot has bids.",
    )
    starting_price = MoneyField()
    reserve_price = MoneyField(required=False, allow_null=True)
    buy_now_price = MoneyField(required=False, allow_null=True)
    bid_increment = MoneyField(required=False, allow_null=True)
    starts_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Absent or past: the lot opens now."
    )
    ends_at = serializers.DateTimeField()
    hard_ends_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Soft close never passes it; default: end + 1 h."
    )
    soft_close_seconds = serializers.IntegerField(required=False, min_value=0, max_value=86_400)
    # PostgreSQL's `integer` column: a larger number was a database error (a 500).
    lot_number = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    draft = serializers.BooleanField(required=False, default=False, write_only=True)

    def validate_image(self, image):
        limit = settings.LOT_IMAGE_MAX_BYTES
        if image is not None and image.size > limit:
            raise serializers.ValidationError(
                f"A photo may be at most {limit / 1024 / 1024:g} MB; this one is {image.size / 1024 / 1024:.1f} MB.",
                code="image_too_large",
            )
        return image


class LotUpdateSerializer(LotWriteSerializer):
    """Used with `partial=True`: only the fields sent change."""

    draft = None
    # Null means "now" and "the default" only when a lot is made; an edit names the time (null was a 500).
    starts_at = serializers.DateTimeField(required=False)
    hard_ends_at = serializers.DateTimeField(required=False)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        write_only=True,
        help_text="Required when staff move the end of a lot with bids earlier; kept in the lot's audit log.",
    )


class StaggerSerializer(serializers.Serializer):
    first_ends_at = serializers.DateTimeField(help_text="When the first lot (in catalogue order) ends.")
    interval_seconds = serializers.IntegerField(
        min_value=0, max_value=86_400, help_text="Each next lot ends this much later."
    )


class AuctionSerializer(serializers.ModelSerializer):
    lot_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Auction
        fields = [
            "id",
            "title",
            "slug",
            "description",
            "starts_at",
            "ends_at",
            "requires_registration",
            "auto_approve",
            "stagger_seconds",
            "lot_count",
            "created_at",
        ]
        read_only_fields = ["id", "lot_count", "created_at"]


class AuctionDetailSerializer(AuctionSerializer):
    lots = serializers.SerializerMethodField()

    class Meta(AuctionSerializer.Meta):
        fields = [*AuctionSerializer.Meta.fields, "lots"]

    @extend_schema_field(LotSerializer(many=True))
    def get_lots(self, auction: Auction) -> list[dict]:
        user = self.context["request"].user
        lots = list_visible_lots(user=user).filter(auction=auction)
        return LotSerializer(lots, many=True, context=self.context).data


class RegistrationSerializer(serializers.ModelSerializer):
    auction = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Registration
        fields = ["id", "auction", "user", "paddle_number", "status", "created_at", "decided_at"]
        read_only_fields = fields


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "type", "lot", "payload", "created_at"]
        read_only_fields = fields
