"""/ws/notifications/: the logged-in user's own events (OUTBID, WON, ...)."""

from __future__ import annotations

from accounts.middleware import CLOSE_UNAUTHORIZED
from lots.events import user_group
from realtime.consumers.base import SocketConsumer


class NotificationConsumer(SocketConsumer):
    handlers = {"PING": "ping"}

    async def connect(self) -> None:
        user = self.scope["user"]
        await self.accept()
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        # The user's own room first: the client may act as soon as the socket is open.
        await self.join(user_group(user.pk))
        await self.watch_credentials()
