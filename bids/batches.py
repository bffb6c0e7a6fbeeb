"""A process's bids on one lot, decided together, whether they came over WebSocket or REST.

The hot paths (a bid, a socket's join) run on PostgreSQL on a few threads of
their own, not on the one thread every consumer of a process shares (Channels'
thread-sensitive mode): bids on different lots and joins proceed side by side.
A process sends one batch of a lot's bids at a time (`LotBids`). SQLite takes
one writer at a time, so there they keep the shared thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import weakref
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection

from bids import services
from ops.exceptions import Unavailable
from ops.metrics import BIDS_WAITING

HOT_PATH_THREADS = 4
_hot_path_executor = ThreadPoolExecutor(HOT_PATH_THREADS, thread_name_prefix="hot-path")


def on_hot_path_threads(func):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return database_sync_to_async(func)
    return database_sync_to_async(func, thread_sensitive=False, executor=_hot_path_executor)


@on_hot_path_threads
def _place_bids(**kwargs) -> list:
    return services.place_bids(**kwargs)


# The most bids one transaction decides; more wait for the next.
BATCH_LIMIT = 64


class LotBids:
    """This process's bids on one lot (`lot_bids`): while one batch is in its transaction, the bids
    that arrive wait together for the next, decided in arrival order under one lock and one commit
    (`bids.services.place_bids`). A bid waits as a future on the loop, never as a thread parked on the lock.
    """

    def __init__(self, lot_id: int, queues: dict[int, LotBids]) -> None:
        self.lot_id, self.queues = lot_id, queues
        self.waiting: list[tuple[services.BidRequest, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    def place(self, request: services.BidRequest) -> asyncio.Future:
        """The bid's outcome, or its error, once the batch it joins commits."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((request, future))
        BIDS_WAITING.inc()
        if self.task is None:
            self.task = loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:BATCH_LIMIT], self.waiting[BATCH_LIMIT:]
                BIDS_WAITING.dec(len(batch))
                try:
                    results = await _place_bids(lot_id=self.lot_id, requests=[request for request, _ in batch])
                except Exception as exc:  # The database went away: every bid of the batch hears it.
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # Its socket closed meanwhile.
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.task = None
            if self.queues.get(self.lot_id) is self and not self.waiting:
                del self.queues[self.lot_id]


_lot_bids: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, LotBids]] = weakref.WeakKeyDictionary()


def lot_bids(lot_id: int) -> LotBids:
    """The running loop's queue of bids on `lot_id`."""
    queues = _lot_bids.setdefault(asyncio.get_running_loop(), {})
    queue = queues.get(lot_id)
    if queue is None:
        queue = queues[lot_id] = LotBids(lot_id, queues)
    return queue


# A server's own loop: a request's thread hands its bid to that loop's queue (`place_bid_from_thread`).
_server_loop: asyncio.AbstractEventLoop | None = None
# The answers request threads wait for from that loop.
_answers: set[concurrent.futures.Future] = set()


def take_bids_from_threads(loop: asyncio.AbstractEventLoop | None) -> None:
    """From now on, a bid placed from a request's thread joins `loop`'s batches (None: decided alone).

    `manage.py serve` sets it, so a REST bid waits with the process's WebSocket bids on the lot, and
    unsets it when its loop has stopped: a request still waiting then is answered `service_unavailable`
    (its bid may have been stored; a retry with its Idempotency-Key tells), not left waiting for good.
    """
    global _server_loop
    _server_loop = loop
    if loop is None:
        for answer in list(_answers):
            if not answer.done():
                answer.set_exception(
                    Unavailable("service_unavailable", "The server is stopping; retry.", retry_after=2)
                )


def _hand_over(lot_id: int, request: services.BidRequest, answer: concurrent.futures.Future) -> None:
    """On the loop: queue `request` on its lot and settle `answer` with its outcome."""

    def settle(decided: asyncio.Future) -> None:
        if answer.done():  # Refused meanwhile: the loop's server is stopping.
            return
        if decided.exception() is not None:
            answer.set_exception(decided.exception())
        else:
            answer.set_result(decided.result())

    lot_bids(lot_id).place(request).add_done_callback(settle)


def place_bid_from_thread(*, lot_id: int, request: services.BidRequest) -> services.BidOutcome:
    """`request`'s outcome, in the server's batch for the lot when there is one, else alone
    (a test client, a command). Raises what `services.place_bid` documents."""
    loop = _server_loop
    if loop is None or not loop.is_running():
        return services.place_bid_request(lot_id=lot_id, request=request)
    # The request waits without its database connection, which goes back to the pool for the batch's
    # thread: held while waiting, a burst of requests would take every connection and no batch could start.
    connection.close()
    answer: concurrent.futures.Future = concurrent.futures.Future()
    _answers.add(answer)
    try:
        # In a context of its own, not this request's: asgiref would send the batch's thread-sensitive
        # work (SQLite's) to this request's thread, which is busy waiting for the answer.
        loop.call_soon_threadsafe(_hand_over, lot_id, request, answer, context=contextvars.Context())
        return answer.result()
    finally:
        _answers.discard(answer)
