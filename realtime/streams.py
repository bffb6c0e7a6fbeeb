"""One lot's events to one socket, each `seq` once and in order.

Events reach a process late, twice, out of order (two processes publish to
the same room) or never (a lost publish). A `LotStream` holds back an event
until every lower `seq` went out, and a gap that does not close within
`WS_GAP_WAIT_SECONDS` is filled from the stored `LotEvent` rows; one longer
than `WS_REPLAY_LIMIT` gets a fresh status instead. The lot room has one
stream, the sale room one per lot of the sale: one piece of code orders both.

The next event in order is written at once, without a task or a lock: that
is the path every event of a healthy room takes, once per socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from lots import selectors as lot_selectors

_reads: dict[tuple[int, int], asyncio.Future] = {}


@database_sync_to_async
def _read_events_since(lot_id: int, since: int) -> list[str] | None:
    return lot_selectors.list_events_since(lot_id=lot_id, since=since, limit=settings.WS_REPLAY_LIMIT)


async def events_since(lot_id: int, since: int) -> list[str] | None:
    """The stored frames of a lot after `since`; None when more than `WS_REPLAY_LIMIT`.

    The sockets of a room that all missed the same event ask at once: they share one read.
    """
    key = (lot_id, since)
    read = _reads.get(key)
    if read is None:
        read = _reads[key] = asyncio.ensure_future(_read_events_since(lot_id, since))
        read.add_done_callback(lambda _: _reads.pop(key, None))
    return await asyncio.shield(read)


class LotStream:
    """A lot's events to one socket.

    `write` puts one frame (a `realtime.fanout.Frame` or a text) on the socket,
    without waiting. `resync` sends the lot's fresh status when the missed
    events are too many to replay and returns its `seq` (None if the lot is
    gone); the stream carries on after it. Until `start`, events are only held:
    the socket has not had the lot's state yet.
    """

    def __init__(
        self,
        lot_id: int,
        *,
        write: Callable[[Any], None],
        resync: Callable[[], Awaitable[int | None]],
        last_seq: int | None = None,
    ) -> None:
        self.lot_id = lot_id
        self.last_seq = last_seq or 0
        self.started = last_seq is not None
        self.pending: dict[int, Any] = {}
        self.gap_task: asyncio.Task | None = None
        self.write = write
        self.resync = resync

    def start(self, last_seq: int, stored: list[str] = ()) -> None:
        """The socket has the lot's state up to `last_seq`, then the `stored` frames after it: events go out from there."""
        self.last_seq, self.started = last_seq, True
        self._write_stored(stored)
        self.pending = {s: f for s, f in self.pending.items() if s > self.last_seq}
        self._flush()

    def receive(self, seq: int, frame: Any) -> None:
        """An event from the room: written now if it is the next one, held back if one before it is missing."""
        if seq == self.last_seq + 1 and self.started and not self.pending:
            self.last_seq = seq
            self.write(frame)
            return
        if seq <= self.last_seq:
            return
        self.pending[seq] = frame
        self._flush()

    def close(self) -> None:
        if self.gap_task is not None:
            self.gap_task.cancel()

    def _write_stored(self, texts: list[str]) -> None:
        for text in texts:
            seq = json.loads(text)["seq"]
            if seq == self.last_seq + 1:
                self.last_seq = seq
                self.write(text)

    def _flush(self) -> None:
        if not self.started:
            return
        while self.last_seq + 1 in self.pending:
            self.last_seq += 1
            self.write(self.pending.pop(self.last_seq))
        if self.pending and (self.gap_task is None or self.gap_task.done()):
            self.gap_task = asyncio.get_running_loop().create_task(self._fill_gaps())

    async def _fill_gaps(self) -> None:
        """An event is missing: wait briefly for it, then read it from the database; until none is."""
        while self.pending:
            await asyncio.sleep(settings.WS_GAP_WAIT_SECONDS)
            if not self.pending:
                return
            before = self.last_seq
            missed = await events_since(self.lot_id, before)
            if self.last_seq != before:
                continue  # Filled meanwhile by a late event: look again.
            if missed is not None:
                self._write_stored(missed)
            # An event is published only after its commit, and each seq is
            # taken under the lot's lock, so whatever came before a received
            # event is stored: a read that fills nothing means the held-back
            # frames are not the lot's (or the lot is gone), and its status is the truth.
            if missed is None or (self.last_seq == before and self.last_seq + 1 not in self.pending):
                seq = await self.resync()
                if seq is not None:
                    self.last_seq = max(self.last_seq, seq)
                self.pending.clear()
            self.pending = {s: f for s, f in self.pending.items() if s > self.last_seq}
            while self.last_seq + 1 in self.pending:
                self.last_seq += 1
                self.write(self.pending.pop(self.last_seq))
