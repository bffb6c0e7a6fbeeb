from django.urls import path

import ops.converters  # noqa: F401  registers the `id` converter
from lots import apis

lot_urlpatterns = [
    path("", apis.LotListApi.as_view(), name="lot-list"),
    path("<id:lot_id>/", apis.LotDetailApi.as_view(), name="lot-detail"),
    path("<id:lot_id>/open/", apis.LotActionApi.as_view(action="open"), name="lot-open"),
    path("<id:lot_id>/close/", apis.LotActionApi.as_view(action="close"), name="lot-close"),
    path("<id:lot_id>/cancel/", apis.LotActionApi.as_view(action="cancel"), name="lot-cancel"),
    path("<id:lot_id>/watch/", apis.WatchApi.as_view(), name="lot-watch"),
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
]

me_urlpatterns = [
    path("me/watchlist/", apis.MyWatchlistApi.as_view(), name="my-watchlist"),
    path("me/won/", apis.MyWonLotsApi.as_view(), name="my-won"),
    path("me/notifications/", apis.MyNotificationsApi.as_view(), name="my-notifications"),
    path("me/registrations/", apis.MyRegistrationsApi.as_view(), name="my-registrations"),
]
