"""The WebSocket consumers: the shared base, a lot's room, a sale's room, a user's notifications."""

from realtime.consumers.base import CLOSE_NOT_FOUND, CLOSE_TOO_BIG
from realtime.consumers.lot import LotConsumer
from realtime.consumers.notifications import NotificationConsumer
from realtime.consumers.sale import AuctionConsumer

__all__ = ["CLOSE_NOT_FOUND", "CLOSE_TOO_BIG", "AuctionConsumer", "LotConsumer", "NotificationConsumer"]
