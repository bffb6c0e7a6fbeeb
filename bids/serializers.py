from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from bids.models import Bid, ChatMessage
from bids.selectors import Standing
from lots.fields import MoneyField
from lots.models import Lot, LotStatus
from lots.selectors import effective_status, get_aliases
from lots.serializers import ALIAS_FIELD, USERNAME_FIELD, viewer_of


class BidInputSerializer(serializers.Serializer):
    amount = MoneyField()
    max_amount = MoneyField(required=False, allow_null=True, help_text="Hidden ceiling for proxy bidding.")


class BidSerializer(serializers.ModelSerializer):
    """A bid as everyone sees it: never the maximum, the bidder by their alias on the lot."""

    bidder = serializers.SerializerMethodField()
    is_you = serializers.SerializerMethodField()
    bidder_username = serializers.SerializerMethodField()
    amount = MoneyField(read_only=True)

    class Meta:
        model = Bid
        fields = ["id", "amount", "bidder", "is_you", "bidder_username", "is_proxy", "is_buy_now", "created_at"]
        read_only_fields = fields

    @extend_schema_field(ALIAS_FIELD)
    def get_bidder(self, bid: Bid) -> str | None:
        if hasattr(bid, "bidder_alias"):  # annotated by `list_public_bids`
            return bid.bidder_alias
        return get_aliases(lot_id=bid.lot_id, user_ids=[bid.bidder_id]).get(bid.bidder_id)

    def get_is_you(self, bid: Bid) -> bool:
        viewer = viewer_of(self)
        return viewer is not None and viewer.is_authenticated and viewer.pk == bid.bidder_id

    @extend_schema_field({**USERNAME_FIELD, "description": "Staff only; null for everyone else."})
    def get_bidder_username(self, bid: Bid) -> str | None:
        viewer = viewer_of(self)
        return bid.bidder.username if viewer is not None and viewer.is_staff else None


class MyBidSerializer(serializers.ModelSerializer):
    """A bid as its bidder sees it, maximum included."""

    amount = MoneyField(read_only=True)
    max_amount = MoneyField(read_only=True, allow_null=True)
    lot_title = serializers.CharField(source="lot.title", read_only=True)
    lot_status = serializers.SerializerMethodField()
    currency = serializers.CharField(source="lot.currency", read_only=True)

    class Meta:
        model = Bid
        fields = [
            "id",
            "lot",
            "lot_title",
            "lot_status",
            "currency",
            "amount",
            "max_amount",
            "is_proxy",
            "is_buy_now",
            "raises_max_only",
            "created_at",
            "void_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=LotStatus.choices))
    def get_lot_status(self, bid: Bid) -> str:
        """The lot's state now: `closed` once its end passed, before a clock settles it too."""
        return effective_status(bid.lot, now=self.context.get("now") or timezone.now())


class MyBiddingSerializer(serializers.ModelSerializer):
    """A lot the user bid on, with where they stand on it (rows of `list_user_bidding`)."""

    status = serializers.ChoiceField(
        source="effective_status",
        choices=LotStatus.choices,
        read_only=True,
        help_text="The lot's state now: `closed` once its end passed, before a clock settles it too.",
    )
    current_price = MoneyField(read_only=True)
    my_highest_bid = MoneyField(read_only=True, help_text="Your highest standing bid on the lot.")
    my_max_amount = MoneyField(
        read_only=True, help_text="The most you authorized: your highest maximum, or your highest bid if you set none."
    )
    my_bid_count = serializers.IntegerField(read_only=True, help_text="Your standing public bids on the lot.")
    standing = serializers.ChoiceField(
        choices=Standing.choices,
        read_only=True,
        help_text="`leading` or `outbid` while the lot is open; `won` or `lost` (someone else won, or no sale) "
        "once it ended; `cancelled`.",
    )

    class Meta:
        model = Lot
        fields = [
            "id",
            "title",
            "status",
            "currency",
            "current_price",
            "bid_count",
            "ends_at",
            "closed_at",
            "my_highest_bid",
            "my_max_amount",
            "my_bid_count",
            "standing",
        ]
        read_only_fields = fields


class AcceptedBidSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    amount = MoneyField()
    bidder = serializers.CharField(help_text="Your alias on the lot: the room's frames name you by it.")
    max_amount = MoneyField(allow_null=True, help_text="Your hidden maximum, if you set one.")
    is_proxy = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class LotPriceSerializer(serializers.Serializer):
    """The part of the lot's public state a bid changes, as NEW_BID's `lot` carries it."""

    current_price = MoneyField(allow_null=True)
    min_next_bid = MoneyField()
    bid_count = serializers.IntegerField()
    high_bidder = serializers.CharField(allow_null=True, help_text="The leader's alias on the lot.")
    reserve_met = serializers.BooleanField()
    ends_at = serializers.DateTimeField()


class OutcomeLotSerializer(LotPriceSerializer):
    seq = serializers.IntegerField(
        help_text="The lot's seq once the bid stood (for a replay, its seq now): the room's events up to it include the bid."
    )


class BidOutcomeSerializer(serializers.Serializer):
    """An accepted bid: the REST answer, with the same fields as BID_ACCEPTED on a socket."""

    code = serializers.CharField(help_text='Always "accepted".')
    leading = serializers.BooleanField(help_text="False when a proxy maximum outbid you at once.")
    replayed = serializers.BooleanField(help_text="True when this answers a retried Idempotency-Key.")
    bid = AcceptedBidSerializer()
    min_next_bid = MoneyField()
    lot = OutcomeLotSerializer()


class ChatInputSerializer(serializers.Serializer):
    # Every check on the text (missing, empty, too long) is the service's, with the same codes as on
    # the socket; DATA_UPLOAD_MAX_MEMORY_SIZE bounds the body.
    text = serializers.CharField(required=False, allow_null=True, allow_blank=True, trim_whitespace=False)


class ChatMessageSerializer(serializers.ModelSerializer):
    """A chat message; `text` is plain text, never HTML."""

    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ChatMessage
        fields = ["id", "user", "text", "is_seller", "created_at"]
        read_only_fields = fields


class VoidedLotSerializer(serializers.Serializer):
    lot = serializers.IntegerField()
    voided = serializers.IntegerField(help_text="how many of the participant's bids on this lot were voided")


class VoidedBidsSerializer(serializers.Serializer):
    lots = VoidedLotSerializer(many=True)
