"""A sale's room on two `manage.py serve` processes (PostgreSQL + Redis): every event of every lot, once, in order.

Bids on three lots of one sale arrive at both processes at once, so each
lot's broadcasts come from both, and reach a process's sale room in whatever
order Redis hands them over. Every sale-room watcher, on either process, must
still get each lot's stored events exactly once and in `seq` order.
"""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from decimal import Decimal

import pytest
from websockets.exceptions import ConnectionClosed

from lots.models import Auction, LotEvent
from testsupport.servers import http, next_frame, register_and_log_in, serve_web, wait_until, ws_connect

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

SLUG = "two-process-sale"
LOTS = 3
# Per lot: two bidders on each process, each sending this many bids.
BIDS_EACH = 12
# Bids from one address come fast; nothing here is about the throttles.
UNTHROTTLED = {"BIDS_PER_MINUTE": "0", "WS_CONNECTIONS_PER_IP": "0"}


class Reader(threading.Thread):
    """Reads a socket as fast as frames come, so the server never holds any back; keeps them all."""

    def __init__(self, ws) -> None:
        super().__init__(daemon=True)
        self.ws, self.frames, self.closed = ws, [], None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.frames.append(json.loads(self.ws.recv(timeout=0.2)))
                except TimeoutError:
                    continue
        except ConnectionClosed as closed:
            self.closed = closed

    def last_seqs(self) -> dict[int, int]:
        seen: dict[int, int] = {}
        for frame in list(self.frames):
            if "seq" in frame:
                seen[frame["lot_id"]] = frame["seq"]
        return seen


class Prices:
    """Each lot's next acceptable amount, as the last answer about it said."""

    def __init__(self, lot_ids: list[int]) -> None:
        self.lock = threading.Lock()
        self.next = dict.fromkeys(lot_ids, Decimal("10.00"))
        self.accepted = 0

    def bid(self, base_url: str, token: str, lot_id: int, *, proxy: bool) -> None:
        with self.lock:
            amount = self.next[lot_id]
        # Now and then a maximum above the price: a rival's next bid then draws a proxy answer too.
        body = {"amount": str(amount), **({"max_amount": str(amount + 3)} if proxy else {})}
        reply = http(
            "POST", f"{base_url}/api/lots/{lot_id}/bids/", json_body=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status in (201, 409, 422), reply.body
        answer = reply.json()
        lot = answer.get("lot", answer)
        with self.lock:
            self.accepted += reply.status == 201
            if lot.get("min_next_bid"):
                self.next[lot_id] = max(self.next[lot_id], Decimal(lot["min_next_bid"]))


def test_sale_room_watchers_on_both_processes_get_each_lots_events_once_in_order(tmp_path, static_root, make_lot):
    auction = Auction.objects.create(title="Two-process sale", slug=SLUG)
    lot_ids = [make_lot(title=f"Lot {n}", auction=auction, starting_price=Decimal("10.00")).pk for n in range(LOTS)]

    with serve_web(tmp_path, static_root, 2, **UNTHROTTLED) as web, ExitStack() as open_:
        tokens = [register_and_log_in(web[0].url, name) for name in ("ann", "ben", "cyd", "dot")]
        sockets = [
            open_.enter_context(ws_connect(f"{server.ws}/ws/auctions/{SLUG}/", origin=server.url))
            for server in (*web, *web)
        ]
        for ws in sockets:
            status = next_frame(ws, "AUCTION_STATUS")
            assert {lot["id"]: lot["seq"] for lot in status["lots"]} == dict.fromkeys(lot_ids, 0)
        readers = [Reader(ws) for ws in sockets]
        for reader in readers:
            reader.start()

        prices = Prices(lot_ids)
        errors: list[BaseException] = []

        def bidder(server, token: str, lot_id: int, number: int) -> None:
            try:
                for round_ in range(BIDS_EACH):
                    prices.bid(server.url, token, lot_id, proxy=(round_ + number) % 4 == 0)
            except BaseException as exc:  # Reported by the test, not lost in the thread.
                errors.append(exc)

        # Per lot, ann and ben bid through the first process, cyd and dot through the second, all at once.
        threads = [
            threading.Thread(target=bidder, args=(web[n // 2], token, lot_id, n), daemon=True)
            for lot_id in lot_ids
            for n, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        assert not any(thread.is_alive() for thread in threads)

        stored = {
            lot_id: [
                json.loads(text)
                for text in LotEvent.objects.filter(lot_id=lot_id).order_by("seq").values_list("text", flat=True)
            ]
            for lot_id in lot_ids
        }
        final = {lot_id: len(events) for lot_id, events in stored.items()}
        wait_until(
            lambda: all(reader.last_seqs() == final or reader.closed for reader in readers),
            timeout=30,
            what=f"every watcher reaching seqs {final}",
        )
        for reader in readers:
            reader.stop.set()
            reader.join(5)

    assert prices.accepted >= LOTS * 10, prices.accepted
    for events in stored.values():
        assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    for number, reader in enumerate(readers):
        where = "first" if number % 2 == 0 else "second"
        assert reader.closed is None, f"a watcher on the {where} process was closed: {reader.closed}"
        for lot_id in lot_ids:
            received = [frame for frame in reader.frames if frame.get("lot_id") == lot_id]
            assert [f["seq"] for f in received] == list(range(1, final[lot_id] + 1)), (
                f"a watcher on the {where} process got lot {lot_id}'s events as {[f['seq'] for f in received]}"
            )
            assert received == stored[lot_id]
