"""Helpers for the WebSocket tests: sockets opened through the real ASGI app.

Every socket is opened through `Sockets`, an async context manager that
disconnects them all at the end, and reports a consumer that crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest import mock

import redis.asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.utils import timezone

from auction_site.asgi import application
from conftest import access_token_for
from lots import events
from lots.events import auction_group, lot_group
from realtime import fanout
from realtime.consumers import base as consumers

ORIGIN = (b"origin", b"http://localhost")
# For a frame that must come: generous enough for a machine at load 12 (a timeout kills
# the consumer, and only a failing test ever waits it out).
TIMEOUT = 30
DISCONNECT_TIMEOUT = 1
# How long "nothing arrives" is watched for. Short is safe: on a slow machine a frame that
# should not come may arrive after it (a false pass), never a false failure.
QUIET = 0.3


class Socket:
    """One client connection; frames are decoded JSON."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator

    async def send(self, frame: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_text(self, text: str) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "bytes": data})

    async def receive(self, timeout: float = TIMEOUT) -> dict:
        """The next frame, whatever its type."""
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", f"expected a frame, got {output}"
        assert "text" in output, f"expected a text frame, got {output}"
        return json.loads(output["text"])

    async def wait_for(self, frame_type: str, timeout: float = TIMEOUT) -> dict:
        """The next frame of `frame_type`, skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.receive(max(deadline - loop.time(), 0.01))
            if frame["type"] == frame_type:
                return frame

    async def frames(self, count: int, *, quiet: float = QUIET) -> list[dict]:
        """The next `count` frames, then any more that arrive until none has for `quiet` seconds."""
        frames = [await self.receive() for _ in range(count)]
        while not await self.communicator.receive_nothing(timeout=quiet):
            frames.append(await self.receive())
        return frames

    async def next(self, timeout: float = TIMEOUT) -> dict:
        """The next frame that is not a USERS_COUNT (those come and go with other watchers)."""
        while True:
            frame = await self.receive(timeout)
            if frame["type"] != "USERS_COUNT":
                return frame

    async def request(self, frame: Any) -> dict:
        """Send a frame and return the next reply."""
        await self.send(frame)
        return await self.next()

    async def events(self, count: int) -> list[dict]:
        return [await self.next() for _ in range(count)]

    async def close_code(self, timeout: float = TIMEOUT) -> int:
        """Skip frames until the server closes the socket; return the close code."""
        while True:
            output = await self.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)

    async def assert_silent(self, timeout: float = QUIET, *, ignore_counts: bool = True) -> None:
        """Nothing but (optionally) USERS_COUNT frames arrives within `timeout`."""
        queue = self.communicator.output_queue
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                output = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                break
            frame = json.loads(output["text"]) if output.get("text") else output
            assert ignore_counts and frame.get("type") == "USERS_COUNT", f"unexpected frame: {frame}"
        if self.communicator.future.done():
            self.communicator.future.result()  # The consumer crashed: raise its error.

    async def is_open(self) -> bool:
        """Still answering: a PING gets a PONG."""
        reply = await self.request({"type": "PING"})
        return reply["type"] == "PONG"


class Sockets:
    """Opens sockets through `auction_site.asgi.application`; disconnects them all on exit."""

    def __init__(self) -> None:
        self.opened: list[WebsocketCommunicator] = []

    async def __aenter__(self) -> Sockets:
        return self

    async def __aexit__(self, *exc_info) -> None:
        crashed = [
            c.future.exception()
            for c in self.opened
            if c.future.done() and not c.future.cancelled() and c.future.exception() is not None
        ]
        for communicator in self.opened:
            if not communicator.future.done():
                await self._disconnect(communicator)
        await fanout.close_hub()
        if crashed and exc_info[0] is None:
            raise AssertionError(f"a consumer crashed: {crashed!r}") from crashed[0]

    @staticmethod
    async def _disconnect(communicator: WebsocketCommunicator) -> None:
        """Send the disconnect; a consumer still running after DISCONNECT_TIMEOUT is cancelled again.

        By then its disconnect handler has run; what lingers is a handler stuck in I/O.
        """
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISCONNECT_TIMEOUT):
                await asyncio.shield(communicator.future)
        if not communicator.future.done():
            communicator.future.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await communicator.future

    async def connect(self, path: str, *, user=None, headers: tuple = ()) -> tuple[Socket, bool]:
        """Open `path` (a `user` adds `?token=`); return the socket and whether it was accepted."""
        if user is not None:
            token = await database_sync_to_async(access_token_for)(user)
            path += ("&" if "?" in path else "?") + f"token={token}"
        communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])
        self.opened.append(communicator)
        accepted, _ = await communicator.connect(timeout=TIMEOUT)
        return Socket(communicator), accepted

    async def open(self, path: str, *, user=None, headers: tuple = ()) -> Socket:
        socket, accepted = await self.connect(path, user=user, headers=headers)
        assert accepted, f"{path} was refused"
        return socket

    async def watch(self, lot, user=None, **kwargs) -> tuple[Socket, dict]:
        """Join a lot's room; return the socket and its LOT_STATUS, its own USERS_COUNT read."""
        socket = await self.open(f"/ws/lots/{lot.pk}/", user=user, **kwargs)
        status = await socket.receive()
        assert status["type"] == "LOT_STATUS", status
        count = await socket.receive()
        assert count["type"] == "USERS_COUNT", count
        return socket, status

    async def closed_with(self, path: str, *, user=None, headers: tuple = ()) -> int:
        """Open `path` and return the code the server closes it with."""
        socket, accepted = await self.connect(path, user=user, headers=headers)
        assert accepted, f"{path} was refused before accept"
        return await socket.close_code()


async def forget_presence(lot) -> None:
    """Drop a lot's watcher count left in Redis by an earlier, killed run (lot ids repeat from run to run)."""
    if not settings.REDIS_URL:
        return
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    try:
        await client.delete(fanout.Hub.counts_key(lot_group(lot.pk)))
    finally:
        await client.aclose()


def clock_near_expiry(monkeypatch, left: float = 3) -> None:
    """The consumers read the time as `left` seconds before a one-hour token expires.

    The token itself stays valid for an hour, so however slowly a loaded machine
    opens the socket it is never refused at connect; the consumer then closes it
    `left` seconds after it opened.
    """
    shift = timedelta(hours=1) - timedelta(seconds=left)
    monkeypatch.setattr(consumers, "timezone", SimpleNamespace(now=lambda: timezone.now() + shift))


def without_broadcast(func, *args, **kwargs):
    """Run a service with its after-commit broadcast lost: the events are stored, never sent."""
    with mock.patch.object(events, "broadcast_many"):
        return func(*args, **kwargs)


async def send_to_room(lot_id: int, seq: int, text: str) -> None:
    """Deliver a lot event to the room directly, as a late or repeated broadcast would."""
    await fanout.publish_async(
        [{"room": lot_group(lot_id), "kind": "event", "lot_id": lot_id, "seq": seq, "text": text}]
    )


async def send_to_sale(slug: str, lot_id: int, seq: int, text: str) -> None:
    """Deliver a lot event to its sale's room directly, as a late or repeated broadcast would."""
    await fanout.publish_async(
        [{"room": auction_group(slug), "kind": "event", "lot_id": lot_id, "seq": seq, "text": text}]
    )


def seqs(frames: list[dict]) -> list[int]:
    return [frame["seq"] for frame in frames]
