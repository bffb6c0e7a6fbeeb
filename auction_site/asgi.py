"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auction_site.settings")
# Django must be set up before the routing imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from accounts.middleware import JWTAuthMiddlewareStack  # noqa: E402
from ops.outages import RedisOutageGuard  # noqa: E402
from realtime.limits import ConnectionLimitMiddleware  # noqa: E402
from realtime.origins import OriginCheck  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402


def allowed_websocket_origins() -> list[str]:
    """This site's own hosts, plus the front ends' origins from settings."""
    hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return [*hosts, *settings.WEBSOCKET_ALLOWED_ORIGINS]


def websocket_application():
    """The WebSocket stack: origin check, Redis outages, connections per address, then credentials, then the rooms.

    The connection limit comes before authentication: a socket over it costs no database work.
    """
    return OriginCheck(
        RedisOutageGuard(ConnectionLimitMiddleware(JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
        allowed_websocket_origins(),
    )


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket_application()})
