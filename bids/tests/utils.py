"""Helpers shared by the bidding and lot service tests."""

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from channels.layers import get_channel_layer
from django.db import connection

from bids.events import lot_group, user_group
from bids.models import Bid, LotEvent
from bids.services import place_bid

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
    """Channels added to groups on the real channel layer, read back after the fact.

    Every call runs on one event loop of its own: a channel layer's receive
    buffers belong to the loop that first waited on them.
    """

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.groups: dict[str, str] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=DRAIN_TIMEOUT + 5)

    def join(self, group: str) -> str:
        channel = self._run(self.layer.new_channel())
        self._run(self.layer.group_add(group, channel))
        self.groups[group] = channel
        return channel

    def watch_user(self, user) -> None:
        self.join(user_group(user.pk))

    def watch_lot(self, lot) -> None:
        self.join(lot_group(lot.pk))

    def drain(self, group: str) -> list[dict]:
        """Every message the group sent the channel since the last drain (all sent before this call)."""
        return self._run(_receive_all(self.layer, self.groups[group]))

    def user_messages(self, user) -> list[dict]:
        """The private events sent to `user` since the last read, decoded."""
        return [json.loads(m["text"]) for m in self.drain(user_group(user.pk))]

    def user_types(self, user) -> list[str]:
        return [m["type"] for m in self.user_messages(user)]

    def lot_messages(self, lot) -> list[dict]:
        """The raw `lot.event` messages sent to the lot's room since the last read."""
        return self.drain(lot_group(lot.pk))

    def close(self) -> None:
        try:
            for group, channel in self.groups.items():
                self._run(self.layer.group_discard(group, channel))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
            # channels_redis closes the connections it opened on a loop when that loop closes;
            # left open, they break the next release of the layer from another loop.
            self.loop.close()


async def _receive_all(layer, channel: str) -> list[dict]:
    """Every message already sent to `channel`: read up to a marker sent after them.

    A channel delivers in the order sent, so nothing sent before the marker is
    missed, however slowly a loaded machine reads (a quiet window would end early).
    """
    marker = {"type": "inbox.marker", "id": uuid.uuid4().hex}
    await layer.send(channel, marker)
    messages = []
    async with asyncio.timeout(DRAIN_TIMEOUT):
        while (message := await layer.receive(channel)).get("id") != marker["id"]:
            messages.append(message)
    return messages


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
