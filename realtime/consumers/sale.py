"""/ws/auctions/<slug>/: every lot event of a sale, each lot's in `seq` order (one `LotStream` per lot)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from lots import selectors as lot_selectors
from lots.events import EventType, auction_group
from lots.serializers import LotSerializer
from realtime.consumers.base import CLOSE_NOT_FOUND, SocketConsumer, query_param, seq_of, user_context
from realtime.consumers.lot import lot_stream
from realtime.fanout import Frame
from realtime.streams import LotStream


@database_sync_to_async
def _auction_status(slug: str, user, since: dict[int, int]) -> dict[str, Any] | None:
    """A sale and its lots; a lot named in `since` at or below its seq comes as its missed events instead."""
    auction = lot_selectors.list_auctions().filter(slug=slug).first()
    if auction is None:
        return None
    fresh, seqs, replays = [], {}, {}
    for lot in LotSerializer(
        lot_selectors.list_visible_lots(user=user).filter(auction=auction), many=True, context=user_context(user)
    ).data:
        seqs[lot["id"]] = lot["seq"]
        if lot["id"] in since and since[lot["id"]] <= lot["seq"]:
            missed = lot_selectors.list_events_since(
                lot_id=lot["id"], since=since[lot["id"]], limit=settings.WS_REPLAY_LIMIT
            )
            if missed is not None:
                replays[lot["id"]] = (since[lot["id"]], missed)
                continue
        fresh.append(lot)
    return {
        "auction": {"slug": auction.slug, "title": auction.title},
        "lots": fresh,
        "seqs": seqs,
        "replays": replays,
    }


def _sale_since(text: str | None) -> dict[int, int]:
    """`?since=<lot_id>:<seq>,<lot_id>:<seq>` as {lot_id: seq}; unusable pairs are left out."""
    since: dict[int, int] = {}
    for pair in (text or "").split(","):
        lot_id, _, seq = pair.partition(":")
        lot_id, seq = seq_of(lot_id), seq_of(seq)
        if lot_id is not None and seq is not None:
            since[lot_id] = seq
    return since


class AuctionConsumer(SocketConsumer):
    """/ws/auctions/<slug>/: a sale's room."""

    handlers = {"PING": "ping"}
    # Events that came before the sale's state was sent, by lot: given to each lot's stream once it starts.
    before_status: dict[int, list[Frame]] | None = None

    async def connect(self) -> None:
        self.streams: dict[int, LotStream] = {}
        self.before_status = {}
        user = self.scope["user"]
        if not await self.accept_watcher():
            return
        slug = self.scope["url_route"]["kwargs"]["slug"]
        # Join before reading the state, as in the lot room.
        await self.join(auction_group(slug))
        status = await _auction_status(slug, user, _sale_since(query_param(self.scope, "since")))
        if status is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.send_json(
            {
                "type": EventType.AUCTION_STATUS,
                "server_time": timezone.now(),
                "auction": status["auction"],
                "lots": status["lots"],
            }
        )
        for lot_id, seq in status["seqs"].items():
            # A replayed lot's stream starts where the client left off.
            since, missed = status["replays"].get(lot_id, (seq, []))
            self.streams[lot_id] = stream = lot_stream(self, lot_id)
            stream.start(since, missed)
        held, self.before_status = self.before_status, None
        for frames in held.values():
            for frame in frames:
                self.receive_event(frame)

    def receive_event(self, frame: Frame) -> None:
        if self.before_status is not None:
            self.before_status.setdefault(frame.lot_id, []).append(frame)
            return
        stream = self.streams.get(frame.lot_id)
        if stream is None:
            # A lot that joined the sale (or became visible) after the snapshot: from its first event.
            stream = self.streams[frame.lot_id] = lot_stream(self, frame.lot_id, 0)
        stream.receive(frame.seq, frame)

    def leave_locally(self) -> None:
        if not self.left:
            for stream in getattr(self, "streams", {}).values():
                stream.close()
        super().leave_locally()
