"""Helpers shared by the bidding and lot service tests."""

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from django.db import connection

from bids.models import Bid
from bids.services import place_bid
from lots.events import lot_group, user_group
from lots.models import LotEvent
from realtime import fanout

# The marker that ends a drain must come; generous for a loaded machine.
DRAIN_TIMEOUT = 30


def bid(lot, user, amount, max_amount=None, **kwargs):
    """Place a bid through the service, amounts as strings like a client sends them."""
    return place_bid(lot_id=lot.pk, bidder=user, amount=amount, max_amount=max_amount, **kwargs)


def lot_events(lot) -> list[dict]:
    """The lot's stored event frames, in `seq` order."""
    return [
        json.loads(text) for text in LotEvent.objects.filter(lot=lot).order_by("seq").values_list("text", flat=True)
    ]


def event_types(lot) -> list[str]:
    return list(LotEvent.objects.filter(lot=lot).order_by("seq").values_list("type", flat=True))


def public_bids(lot) -> list[tuple[str, Decimal, bool]]:
    """(bidder, amount, is_proxy) of the lot's standing public bids, oldest first."""
    bids = Bid.objects.filter(lot=lot, raises_max_only=False, void_reason="").select_related("bidder").order_by("id")
    return [(b.bidder.username, b.amount, b.is_proxy) for b in bids]


class Inbox:
    """Rooms of the real fan-out (`realtime.fanout`), joined on an event loop of this inbox's own, read back after the fact.

    Each message comes as a dict: `type` "lot.event" (with `lot_id`, `seq`),
    "text" (a chat or notification frame) or "close", and its `text`.
    """

    def __init__(self) -> None:
        self.received: dict[str, list[dict]] = {}
        self.markers: dict[str, tuple[str, asyncio.Future]] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=DRAIN_TIMEOUT + 5)

    # The fan-out's member interface, called on the inbox's loop.
    def receive_frame(self, room: str, frame) -> None:
        marker = self.markers.get(room)
        if marker is not None and frame.text == marker[0]:
            marker[1].set_result(None)
            return
        kinds = {fanout.EVENT: "lot.event", fanout.TEXT: "text", fanout.CLOSE: "close"}
        message = {"type": kinds[frame.kind], "text": frame.text}
        if frame.kind == fanout.EVENT:
            message.update(lot_id=frame.lot_id, seq=frame.seq)
        self.received[room].append(message)

    def receive_count(self, room: str, count: int) -> None:
        pass

    def lost(self) -> None:
        pass

    def join(self, room: str) -> None:
        self.received[room] = []
        self._run(self._join(room))

    async def _join(self, room: str) -> None:
        await fanout.get_hub().join(room, self)

    def watch_user(self, user) -> None:
        self.join(user_group(user.pk))

    def watch_lot(self, lot) -> None:
        self.join(lot_group(lot.pk))

    def drain(self, room: str) -> list[dict]:
        """Every message sent to the room since the last drain (all sent before this call)."""
        return self._run(self._drain(room))

    async def _drain(self, room: str) -> list[dict]:
        # A marker published after them comes after them: the fan-out keeps a room's order.
        text, arrived = self.markers[room] = (
            f"inbox-marker-{uuid.uuid4().hex}",
            asyncio.get_running_loop().create_future(),
        )
        await fanout.publish_async([{"room": room, "kind": "text", "text": text}])
        async with asyncio.timeout(DRAIN_TIMEOUT):
            await arrived
        messages, self.received[room] = self.received[room], []
        return messages

    def user_messages(self, user) -> list[dict]:
        """The private events sent to `user` since the last read, decoded."""
        return [json.loads(m["text"]) for m in self.drain(user_group(user.pk))]

    def user_types(self, user) -> list[str]:
        return [m["type"] for m in self.user_messages(user)]

    def lot_messages(self, lot) -> list[dict]:
        """The messages sent to the lot's room since the last read."""
        return self.drain(lot_group(lot.pk))

    def close(self) -> None:
        try:
            self._run(fanout.close_hub())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            self.loop.close()


def run_threads(target, args_list) -> list:
    """Start every thread at once; the results (or exceptions) in order."""
    barrier = threading.Barrier(len(args_list))

    def run(args):
        try:
            barrier.wait()
            return target(*args)
        except Exception as exc:
            return exc
        finally:
            connection.close()

    connection.close()
    with ThreadPoolExecutor(max_workers=len(args_list)) as pool:
        return list(pool.map(run, args_list))


def replay_leaders(bids: list[Bid]) -> list[tuple[Bid, int, Decimal]]:
    """Each bid with who leads once it stands: the first to reach the highest maximum."""
    leader, ceiling, steps = None, Decimal(0), []
    for b in bids:
        own = b.max_amount or b.amount
        if own > ceiling:
            leader, ceiling = b.bidder_id, own
        steps.append((b, leader, ceiling))
    return steps
