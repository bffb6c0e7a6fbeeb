"""Where the domain hands its committed messages to the real-time edge, which it does not import.

A message is a dict: `room` (a group name from `lots.events`/`accounts.services`),
`kind` ("event": a lot event with its `lot_id` and `seq`; "text": a frame as is;
"close": the room's sockets close with 4401), and `text`. The `realtime` app
plugs its fan-out in when it loads; without it, nothing is sent.
"""

from __future__ import annotations

from typing import Any, Protocol


class Fanout(Protocol):
    def publish(self, items: list[dict[str, Any]]) -> None: ...

    async def publish_async(self, items: list[dict[str, Any]]) -> None: ...

    def check_reachable(self) -> None: ...


_fanout: Fanout | None = None


def use(fanout: Fanout) -> None:
    global _fanout
    _fanout = fanout


def publish(items: list[dict[str, Any]]) -> None:
    """From a thread that is not an event loop's (a request, after its commit). Raises what the fan-out raised."""
    if _fanout is not None and items:
        _fanout.publish(items)


async def publish_async(items: list[dict[str, Any]]) -> None:
    """On an event loop."""
    if _fanout is not None and items:
        await _fanout.publish_async(items)


def check_reachable() -> None:
    """Raises when the fan-out's broker does not answer (the health checks); nothing to check without a fan-out."""
    if _fanout is not None:
        _fanout.check_reachable()
