"""WebSocket routes: a lot's room, a sale's room, your notifications; anything else closes with 4404.

The ids and slugs a route takes are bounded like the rows they name (a lot id of
at most 18 digits, a slug no longer than `Auction.slug`), so every room's name
stays short; a longer one matches no route. A path no route takes (an unknown `/ws/...`, or `Upgrade:
websocket` on a page or an API path) is accepted and closed with 4404 at once,
never a server error.
"""

from django.urls import path, re_path, register_converter
from django.urls.converters import SlugConverter

import ops.converters  # noqa: F401  registers the `id` converter: a row id of at most 18 digits
from accounts.middleware import accept_and_close
from lots.models import Auction
from realtime import consumers


class SaleSlugConverter(SlugConverter):
    """A sale's slug in a URL: no longer than the column holds."""

    regex = f"[-a-zA-Z0-9_]{{1,{Auction._meta.get_field('slug').max_length}}}"


register_converter(SaleSlugConverter, "sale_slug")


async def refuse_unknown_path(scope, receive, send) -> None:
    await accept_and_close(receive, send, consumers.CLOSE_NOT_FOUND)


websocket_urlpatterns = [
    path("ws/lots/<id:lot_id>/", consumers.LotConsumer.as_asgi()),
    path("ws/auctions/<sale_slug:slug>/", consumers.AuctionConsumer.as_asgi()),
    path("ws/notifications/", consumers.NotificationConsumer.as_asgi()),
    re_path(r"", refuse_unknown_path),
]
