"""One lot's events to one socket, each `seq` once and in order.

Broadcasts reach a process late, twice, out of order (two processes send to
the same group) or never (a lost `group_send`). A `LotStream` holds back an
event until every lower `seq` went out, and a gap that does not close within
`WS_GAP_WAIT_SECONDS` is filled from the stored `LotEvent` rows; one longer
than `WS_REPLAY_LIMIT` gets a fresh status instead. The lot room has one
stream, the sale room one per lot of the sale: one piece of code orders both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from bids import selectors as bid_selectors


@database_sync_to_async
def events_since(lot_id: int, since: int) -> list[str] | None:
    """The stored frames of a lot after `since`; None when more than `WS_REPLAY_LIMIT`."""
    return bid_selectors.list_events_since(lot_id=lot_id, since=since, limit=settings.WS_REPLAY_LIMIT)


class LotStream:
    """A lot's events to one socket, from `last_seq` on.

    `send` writes one frame's text to the socket. `resync` sends the lot's
    fresh status when the missed events are too many to replay and returns
    its `seq` (None if the lot is gone); the stream carries on after it.
    """

    def __init__(
        self,
        lot_id: int,
        last_seq: int,
        *,
        send: Callable[[str], Awaitable[None]],
        resync: Callable[[], Awaitable[int | None]],
    ) -> None:
        self.lot_id = lot_id
        self.last_seq = last_seq
        self.pending: dict[int, str] = {}
        self.gap_task: asyncio.Task | None = None
        self.lock = asyncio.Lock()
        self.send = send
        self.resync = resync

    async def replay(self, texts: list[str]) -> None:
        """Send stored frames (those right after `last_seq`, in order), as read by `events_since`."""
        async with self.lock:
            await self._send_stored(texts)

    async def receive(self, seq: int, text: str) -> None:
        """A broadcast event: sent now if it is the next one, held back if one before it is missing."""
        if seq <= self.last_seq:
            return
        self.pending[seq] = text
        await self._flush()
        if self.pending and (self.gap_task is None or self.gap_task.done()):
            self.gap_task = asyncio.get_running_loop().create_task(self._fill_gaps())

    def close(self) -> None:
        if self.gap_task is not None:
            self.gap_task.cancel()

    async def _send_stored(self, texts: list[str]) -> None:
        for text in texts:
            seq = json.loads(text)["seq"]
            if seq == self.last_seq + 1:
                self.last_seq = seq
                await self.send(text)

    async def _flush(self) -> None:
        async with self.lock:
            while self.last_seq + 1 in self.pending:
                self.last_seq += 1
                await self.send(self.pending.pop(self.last_seq))

    async def _fill_gaps(self) -> None:
        """An event is missing: wait briefly for it, then read it from the database; until none is."""
        while self.pending:
            await asyncio.sleep(settings.WS_GAP_WAIT_SECONDS)
            if not self.pending:
                return
            missed = await events_since(self.lot_id, self.last_seq)
            async with self.lock:
                before = self.last_seq
                if missed is not None:
                    await self._send_stored(missed)
                # An event is broadcast only after its commit, and each seq is
                # taken under the lot's lock, so whatever came before a received
                # event is stored: a read that fills nothing means the held-back
                # frames are not the lot's (or the lot is gone), and its status is the truth.
                if missed is None or (self.last_seq == before and self.last_seq + 1 not in self.pending):
                    seq = await self.resync()
                    if seq is not None:
                        self.last_seq = max(self.last_seq, seq)
                    self.pending.clear()
                self.pending = {s: t for s, t in self.pending.items() if s > self.last_seq}
            await self._flush()
