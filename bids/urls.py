from django.urls import path

import ops.converters  # noqa: F401  registers the `id` converter
from bids import apis

# Under /api/lots/, beside the lots' own routes (`lots.urls`).
lot_urlpatterns = [
    path("<id:lot_id>/bids/", apis.LotBidsApi.as_view(), name="lot-bids"),
    path("<id:lot_id>/buy-now/", apis.BuyNowApi.as_view(), name="lot-buy-now"),
    path("<id:lot_id>/chat/", apis.LotChatApi.as_view(), name="lot-chat"),
    path("<id:lot_id>/chat/<id:message_id>/hide/", apis.ChatHideApi.as_view(), name="lot-chat-hide"),
]

# Under /api/auctions/.
auction_urlpatterns = [
    path(
        "<slug:slug>/participants/<id:registration_id>/void-bids/",
        apis.ParticipantVoidBidsApi.as_view(),
        name="participant-void-bids",
    ),
]

# Under /api/users/.
me_urlpatterns = [
    path("me/bids/", apis.MyBidsApi.as_view(), name="my-bids"),
    path("me/bidding/", apis.MyBiddingApi.as_view(), name="my-bidding"),
]
