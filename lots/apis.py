from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lots import selectors, services
from lots.filters import LotFilter
from lots.permissions import IsStaffOrReadOnly
from lots.serializers import (
    AuctionDetailSerializer,
    AuctionSerializer,
    LotSerializer,
    LotUpdateSerializer,
    LotWriteSerializer,
    NotificationSerializer,
    RegistrationSerializer,
    StaggerSerializer,
)
from ops.exceptions import NotFound


class LotListApi(generics.ListAPIView):
    """Lots anyone may see; POST creates one with the caller as seller."""

    serializer_class = LotSerializer
    filterset_class = LotFilter
    search_fields = ["title", "description"]
    ordering_fields = ["ends_at", "starts_at", "price", "current_price", "bid_count", "created_at"]
    ordering = ["ends_at", "id"]

    def get_queryset(self):
        return selectors.list_visible_lots(user=self.request.user)

    def get_serializer_class(self):
        # OPTIONS describes what a POST takes (the currencies, the default one) from this.
        return LotWriteSerializer if self.request.method == "POST" else LotSerializer

    @extend_schema(request=LotWriteSerializer, responses={201: LotSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        lot = services.create_lot(seller=request.user, actor=request.user, **serializer.validated_data)
        return Response(LotSerializer(lot, context={"request": request}).data, status=status.HTTP_201_CREATED)


def _visible_lot(request: Request, lot_id: int):
    lot = services.visible_lot_settled(lot_id=lot_id, user=request.user)
    if lot is None:
        raise NotFound("lot_not_found", "No such lot.")
    return lot


class LotDetailApi(APIView):
    serializer_class = LotSerializer

    @extend_schema(responses={200: LotSerializer})
    def get(self, request: Request, lot_id: int) -> Response:
        return Response(LotSerializer(_visible_lot(request, lot_id), context={"request": request}).data)

    @extend_schema(request=LotUpdateSerializer, responses={200: LotSerializer})
    def patch(self, request: Request, lot_id: int) -> Response:
        serializer = LotUpdateSerializer(data=request.data, partial=True, context={"request": request})
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        reason = changes.pop("reason", "")
        services.update_lot(lot_id=lot_id, actor=request.user, changes=changes, reason=reason)
        return Response(LotSerializer(selectors.get_lot(lot_id=lot_id), context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, lot_id: int) -> Response:
        services.delete_lot(lot_id=lot_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LotActionApi(APIView):
    """open/, close/ and cancel/: the seller or staff, through the lot services."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = LotSerializer
    action = None
    actions = {"open": services.open_lot, "close": services.close_lot, "cancel": services.cancel_lot}

    @extend_schema(request=None, responses={200: LotSerializer})
    def post(self, request: Request, lot_id: int) -> Response:
        self.actions[self.action](lot_id=lot_id, actor=request.user)
        return Response(LotSerializer(selectors.get_lot(lot_id=lot_id), context={"request": request}).data)


class WatchApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={201: None})
    def post(self, request: Request, lot_id: int) -> Response:
        services.watch_lot(lot_id=lot_id, user=request.user)
        return Response({"lot_id": lot_id, "watching": True}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, lot_id: int) -> Response:
        services.unwatch_lot(lot_id=lot_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyWatchlistApi(generics.ListAPIView):
    serializer_class = LotSerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list = []

    def get_queryset(self):
        return selectors.list_watchlist(user=self.request.user)


class MyWonLotsApi(MyWatchlistApi):
    def get_queryset(self):
        return selectors.list_won_lots(user=self.request.user)


class AuctionListApi(generics.ListCreateAPIView):
    serializer_class = AuctionSerializer
    permission_classes = [IsStaffOrReadOnly]
    filter_backends: list = []

    def get_queryset(self):
        # An aggregate drops Meta.ordering: restate it, or pages could repeat or skip sales.
        return selectors.list_auctions().annotate(lot_count=Count("lots")).order_by("-created_at", "-id")

    def perform_create(self, serializer: AuctionSerializer) -> None:
        serializer.instance = services.create_auction(**serializer.validated_data)
        serializer.instance.lot_count = 0  # what the list and detail views annotate


class AuctionStaggerApi(APIView):
    """Staff: end the sale's lots one after another, in catalogue order."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=StaggerSerializer, responses={200: LotSerializer(many=True)})
    def post(self, request: Request, slug: str) -> Response:
        serializer = StaggerSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        auction = _auction_or_404(slug)
        lots = services.stagger_auction_lots(auction=auction, actor=request.user, **serializer.validated_data)
        return Response(LotSerializer(lots, many=True, context={"request": request}).data)


class AuctionDetailApi(generics.RetrieveUpdateAPIView):
    serializer_class = AuctionDetailSerializer
    permission_classes = [IsStaffOrReadOnly]
    lookup_field = "slug"
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.list_auctions().annotate(lot_count=Count("lots"))

    def perform_update(self, serializer: AuctionDetailSerializer) -> None:
        before = serializer.instance
        serializer.instance = services.update_auction(auction_id=before.pk, changes=serializer.validated_data)
        serializer.instance.lot_count = before.lot_count


def _auction_or_404(slug: str):
    auction = selectors.list_auctions().filter(slug=slug).first()
    if auction is None:
        raise NotFound("auction_not_found", "No such sale.")
    return auction


class AuctionRegisterApi(APIView):
    """Register to bid in a sale; answers with your paddle number and status."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={201: RegistrationSerializer})
    def post(self, request: Request, slug: str) -> Response:
        auction = _auction_or_404(slug)
        registration = services.register_for_auction(auction_id=auction.pk, user=request.user)
        return Response(RegistrationSerializer(registration).data, status=status.HTTP_201_CREATED)


class ParticipantListApi(generics.ListAPIView):
    """Staff: everyone registered for the sale."""

    serializer_class = RegistrationSerializer
    permission_classes = [permissions.IsAdminUser]
    filter_backends: list = []

    def get_queryset(self):
        _auction_or_404(self.kwargs["slug"])
        return selectors.list_participants(auction_slug=self.kwargs["slug"])


class ParticipantDecisionApi(APIView):
    """Staff: approve/, reject/ or revoke/ a registration."""

    permission_classes = [permissions.IsAdminUser]
    decision = None

    @extend_schema(request=None, responses={200: RegistrationSerializer})
    def post(self, request: Request, slug: str, registration_id: int) -> Response:
        if not selectors.list_participants(auction_slug=slug).filter(pk=registration_id).exists():
            raise NotFound("registration_not_found", "No such registration in this sale.")
        registration = services.decide_registration(
            registration_id=registration_id, actor=request.user, decision=self.decision
        )
        return Response(RegistrationSerializer(registration).data)


class MyRegistrationsApi(generics.ListAPIView):
    serializer_class = RegistrationSerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list = []

    def get_queryset(self):
        return selectors.list_user_registrations(user=self.request.user)


class MyNotificationsApi(generics.ListAPIView):
    """Your notifications, newest first: what /ws/notifications/ pushed while you were away."""

    serializer_class = NotificationSerializer
    permission_classes = [permissions.IsAuthenticated]
    filter_backends: list = []

    def get_queryset(self):
        return selectors.list_user_notifications(user=self.request.user)
