from django.urls import path, register_converter
from django.urls.converters import IntConverter

from bids.apis import BuyNowApi, ChatHideApi, LotBidsApi, LotChatApi, MyBidsApi, MyNotificationsApi
from lots import apis


class RowIdConverter(IntConverter):
    """A row id in a URL: at most 18 digits, so no id past a 64-bit column reaches a query.

    SQLite's driver raises OverflowError (a 500) for such an id in a foreign key lookup;
    here it is a 404 like any other missing object. The schema states the range
    (`PATH_CONVERTER_OVERRIDES`).
    """

    regex = "[0-9]{1,18}"


register_converter(RowIdConverter, "id")

lot_urlpatterns = [
    path("", apis.LotListApi.as_view(), name="lot-list"),
    path("<id:lot_id>/", apis.LotDetailApi.as_view(), name="lot-detail"),
    path("<id:lot_id>/open/", apis.LotActionApi.as_view(action="open"), name="lot-open"),
    path("<id:lot_id>/close/", apis.LotActionApi.as_view(action="close"), name="lot-close"),
    path("<id:lot_id>/cancel/", apis.LotActionApi.as_view(action="cancel"), name="lot-cancel"),
    path("<id:lot_id>/bids/", LotBidsApi.as_view(), name="lot-bids"),
    path("<id:lot_id>/buy-now/", BuyNowApi.as_view(), name="lot-buy-now"),
    path("<id:lot_id>/watch/", apis.WatchApi.as_view(), name="lot-watch"),
    path("<id:lot_id>/chat/", LotChatApi.as_view(), name="lot-chat"),
    path("<id:lot_id>/chat/<id:message_id>/hide/", ChatHideApi.as_view(), name="lot-chat-hide"),
]

auction_urlpatterns = [
    path("", apis.AuctionListApi.as_view(), name="auction-list"),
    path("<slug:slug>/", apis.AuctionDetailApi.as_view(), name="auction-detail"),
    path("<slug:slug>/stagger/", apis.AuctionStaggerApi.as_view(), name="auction-stagger"),
    path("<slug:slug>/register/", apis.AuctionRegisterApi.as_view(), name="auction-register"),
    path("<slug:slug>/participants/", apis.ParticipantListApi.as_view(), name="auction-participants"),
    *[
        path(
            f"<slug:slug>/participants/<id:registration_id>/{decision}/",
            apis.ParticipantDecisionApi.as_view(decision=decision),
            name=f"participant-{decision}",
        )
        for decision in ("approve", "reject", "revoke")
    ],
    path(
        "<slug:slug>/participants/<id:registration_id>/void-bids/",
        apis.ParticipantVoidBidsApi.as_view(),
        name="participant-void-bids",
    ),
]

me_urlpatterns = [
    path("me/bids/", MyBidsApi.as_view(), name="my-bids"),
    path("me/watchlist/", apis.MyWatchlistApi.as_view(), name="my-watchlist"),
    path("me/won/", apis.MyWonLotsApi.as_view(), name="my-won"),
    path("me/notifications/", MyNotificationsApi.as_view(), name="my-notifications"),
    path("me/registrations/", apis.MyRegistrationsApi.as_view(), name="my-registrations"),
]
