"""Browsers may open sockets from this site's hosts and from the front ends listed in settings."""

import os
import subprocess
import sys

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from auction_site.asgi import websocket_application

pytestmark = pytest.mark.django_db(transaction=True)

# Not one of the site's own hosts (those match on any port).
FRONT_END = "http://app.example:3000"


async def opens_from(origin: str, lot_id: int) -> bool:
    """Whether the stack accepts the handshake and sends the room's first frame."""
    socket = WebsocketCommunicator(
        websocket_application(), f"/ws/lots/{lot_id}/", headers=[(b"origin", origin.encode())]
    )
    try:
        connected, _ = await socket.connect()
        return connected and (await socket.receive_json_from())["type"] == "LOT_STATUS"
    finally:
        await socket.disconnect()


async def test_a_listed_front_end_origin_may_open_a_socket(settings, make_lot):
    settings.WEBSOCKET_ALLOWED_ORIGINS = [FRONT_END]
    lot = await database_sync_to_async(make_lot)()

    assert await opens_from(FRONT_END, lot.pk)
    assert not await opens_from("http://app.example:4000", lot.pk)
    assert not await opens_from("https://evil.example", lot.pk)


async def test_an_unlisted_front_end_origin_is_refused(settings, make_lot):
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    lot = await database_sync_to_async(make_lot)()

    assert not await opens_from(FRONT_END, lot.pk)
    assert await opens_from("http://localhost", lot.pk)


def test_the_socket_allow_list_defaults_to_the_cors_origins():
    env = {k: v for k, v in os.environ.items() if k != "WEBSOCKET_ALLOWED_ORIGINS"}
    env["CORS_ALLOWED_ORIGINS"] = f"{FRONT_END},https://shop.example"
    printed = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.WEBSOCKET_ALLOWED_ORIGINS)"],
        env={**env, "DJANGO_SETTINGS_MODULE": "auction_site.settings"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert printed.strip() == str([FRONT_END, "https://shop.example"])
