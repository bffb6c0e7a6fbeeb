from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bids import batches, selectors, services
from bids.events import bid_outcome_payload
from bids.serializers import (
    BidInputSerializer,
    BidOutcomeSerializer,
    BidSerializer,
    ChatInputSerializer,
    ChatMessageSerializer,
    MyBiddingSerializer,
    MyBidSerializer,
    VoidedBidsSerializer,
)
from lots import selectors as lot_selectors
from lots.selectors import is_lot_visible
from ops.exceptions import InvalidInput, NotFound
from ops.openapi import ErrorSerializer

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Retries with the same key return the first outcome and create nothing (max 100 characters).",
)


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 100:
        raise InvalidInput("invalid_idempotency_key", "Idempotency-Key must be 1 to 100 characters.")
    return key


def outcome_response(outcome: services.BidOutcome) -> Response:
    """The answer BID_ACCEPTED gives on a socket, from the bid's own transaction: the lot is not read again."""
    return Response(BidOutcomeSerializer(bid_outcome_payload(outcome)).data, status=status.HTTP_201_CREATED)


class LotBidsApi(generics.ListAPIView):
    """GET: the lot's bids, newest first. POST: place a bid."""

    serializer_class = BidSerializer
    filter_backends: list = []

    def get_queryset(self):
        lot_id = self.kwargs["lot_id"]
        if not is_lot_visible(lot_id=lot_id, user=self.request.user):
            raise NotFound("lot_not_found", "No such lot.")
        return selectors.list_public_bids(lot_id=lot_id)

    @extend_schema(request=BidInputSerializer, responses={201: BidOutcomeSerializer}, parameters=[IDEMPOTENCY_HEADER])
    def post(self, request: Request, lot_id: int) -> Response:
        serializer = BidInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bid = services.bid_request(
            lot_id=lot_id, bidder=request.user, idempotency_key=idempotency_key(request), **serializer.validated_data
        )
        return outcome_response(batches.place_bid_from_thread(lot_id=lot_id, request=bid))


class BuyNowApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={201: BidOutcomeSerializer}, parameters=[IDEMPOTENCY_HEADER])
    def post(self, request: Request, lot_id: int) -> Response:
        outcome = services.buy_now(lot_id=lot_id, buyer=request.user, idempotency_key=idempotency_key(request))
        return outcome_response(outcome)


class MyBidsApi(generics.ListAPIView):
    serializer_class = MyBidSerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list = []

    def get_queryset(self):
        return selectors.list_user_bids(user=self.request.user)


class MyBiddingApi(generics.ListAPIView):
    """The lots you bid on, one row each with your standing: open ones first (ending soonest), then ended ones."""

    serializer_class = MyBiddingSerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list = []

    def get_queryset(self):
        return selectors.list_user_bidding(user=self.request.user, now=timezone.now())


class LotChatApi(generics.ListAPIView):
    """GET: the lot's chat, newest first (paginated). POST: say something in the room."""

    serializer_class = ChatMessageSerializer
    filter_backends: list = []

    def get_queryset(self):
        lot_id = self.kwargs["lot_id"]
        if not is_lot_visible(lot_id=lot_id, user=self.request.user):
            raise NotFound("lot_not_found", "No such lot.")
        return selectors.list_chat_messages(lot_id=lot_id)

    @extend_schema(request=ChatInputSerializer, responses={201: ChatMessageSerializer, 429: ErrorSerializer})
    def post(self, request: Request, lot_id: int) -> Response:
        serializer = ChatInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = services.post_chat_message(
            lot_id=lot_id, author=request.user, text=serializer.validated_data.get("text")
        )
        return Response(ChatMessageSerializer(message).data, status=status.HTTP_201_CREATED)


class ChatHideApi(APIView):
    """The lot's seller or staff hide a message from the room."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, lot_id: int, message_id: int) -> Response:
        services.hide_chat_message(lot_id=lot_id, message_id=message_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ParticipantVoidBidsApi(APIView):
    """Staff: void the participant's bids on the sale's open lots; each lot's other bids are replayed without them."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=None, responses={200: VoidedBidsSerializer})
    def post(self, request: Request, slug: str, registration_id: int) -> Response:
        if not lot_selectors.list_participants(auction_slug=slug).filter(pk=registration_id).exists():
            raise NotFound("registration_not_found", "No such registration in this sale.")
        voided = services.void_participant_bids(registration_id=registration_id, actor=request.user)
        lots = [{"lot": lot_id, "voided": count} for lot_id, count in voided.items()]
        return Response(VoidedBidsSerializer({"lots": lots}).data)
