from django.urls import path

from bids import consumers

websocket_urlpatterns = [
    path("ws/lots/<int:lot_id>/", consumers.LotConsumer.as_asgi()),
    path("ws/auctions/<slug:slug>/", consumers.AuctionConsumer.as_asgi()),
    path("ws/notifications/", consumers.NotificationConsumer.as_asgi()),
]
