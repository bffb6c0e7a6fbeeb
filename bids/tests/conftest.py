"""Fixtures for the WebSocket tests of the bids app."""

import pytest
from channels.db import database_sync_to_async

from testsupport.ws import Sockets


@pytest.fixture
async def ws():
    """Open sockets through `ws.watch(...)`; every one is disconnected at the end."""
    async with Sockets() as sockets:
        yield sockets


@pytest.fixture
def new_lot(make_lot):
    """`await new_lot(**fields)`: a lot made by the service, open now."""
    return database_sync_to_async(make_lot)
