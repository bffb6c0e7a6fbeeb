"""The WebSocket protocol as the README documents it, held to what the server sends.

The server's frame types are one registry (`lots.events.EventType`); the README's
protocol section has a row for each, with its fields. One session drives every
type through the real consumers and services, and each frame received must be a
documented type with only documented fields (and, for `name {a, b}` fields, only
documented keys inside).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from bids.services import place_bid, void_bids
from lots import services as lot_services
from lots.events import EventType
from lots.models import Auction, Lot
from testsupport.ws import Socket

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(settings.BASE_DIR) / "README.md"
# A field in a table cell: `name`, `name?`, `name: "value"`, or `name {key, key (note), …}`.
FIELD = re.compile(r"`([a-z_]+)\??(?:: [^`]*)?(?: \{([^}]*)\})?`")
# Every notification frame carries these beside its fields.
NOTIFICATION_ENVELOPE = {"id", "created_at"}


def documented(header: str) -> dict[str, dict[str, set[str] | None]]:
    """The README table under `header`: {type: {field: keys inside it, or None}}."""
    lines = README.read_text().splitlines()
    start = lines.index(header) + 2
    table: dict[str, dict[str, set[str] | None]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        types_cell, fields_cell = line.split(" | ")[:2]
        fields = {
            name: {re.sub(r"\s*\(.*?\)", "", key).strip() for key in keys.split(",")} if keys else None
            for name, keys in FIELD.findall(fields_cell)
        }
        for frame_type in re.findall(r"`([A-Z_]+)`", types_cell):
            table[frame_type] = fields
    return table


SERVER_FRAMES = documented("| type | fields | to |")
NOTIFICATIONS = documented("| type | fields (besides `id` and `created_at`) | when |")


def test_the_registry_and_the_readme_name_the_same_types():
    assert set(SERVER_FRAMES) | set(NOTIFICATIONS) == {member.value for member in EventType}


def undocumented(frame: dict, table: dict, envelope: set[str] = frozenset()) -> list[str]:
    """What in `frame` its row in `table` does not name."""
    if frame["type"] not in table:
        return [f"type {frame['type']}"]
    fields = table[frame["type"]]
    problems = [f"field {name}" for name in frame.keys() - {"type"} - envelope - fields.keys()]
    for name, keys in fields.items():
        if keys is not None and isinstance(frame.get(name), dict):
            problems += [f"{name}.{key}" for key in frame[name].keys() - keys]
    return problems


class Session:
    """Reads frames until the one wanted; remembers every frame read, by socket kind."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    async def until(self, socket: Socket, frame_type: EventType, *, kind: str = "room") -> dict:
        while True:
            frame = await socket.receive()
            self.seen.append((kind, frame))
            if frame["type"] == frame_type:
                return frame

    def check(self) -> None:
        problems = []
        for kind, frame in self.seen:
            table, envelope = (NOTIFICATIONS, NOTIFICATION_ENVELOPE) if kind == "inbox" else (SERVER_FRAMES, set())
            problems += [f"{frame['type']} ({kind}): {p}" for p in undocumented(frame, table, envelope)]
        assert problems == [], "sent but not in the README's protocol section:\n" + "\n".join(problems)
        assert {member.value for member in EventType} - {frame["type"] for _, frame in self.seen} == set()


@database_sync_to_async
def sale_with_lots(seller):
    """A sale needing registration (`approve` lets a bidder in), an open lot with a soft close wider
    than its time left (every bid extends it), and a scheduled lot."""
    now = timezone.now()
    sale = Auction.objects.create(title="Spring sale", slug="spring", requires_registration=True)
    hot = lot_services.create_lot(
        seller=seller,
        title="Art deco lamp",
        starting_price="10.00",
        ends_at=now + timedelta(hours=1),
        hard_ends_at=now + timedelta(hours=3),
        soft_close_seconds=7200,
        auction=sale,
    )
    scheduled = lot_services.create_lot(
        seller=seller,
        title="Brass clock",
        starting_price="10.00",
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
        auction=sale,
    )
    return sale, hot, scheduled


@database_sync_to_async
def approve(sale, user, staff):
    registration = lot_services.register_for_auction(auction_id=sale.pk, user=user)
    lot_services.decide_registration(registration_id=registration.pk, actor=staff, decision="approve")


@database_sync_to_async
def announce_ending_soon(lot):
    ends_at = Lot.objects.get(pk=lot.pk).ends_at
    return lot_services.announce_next_ending_soon(now=ends_at - timedelta(seconds=60))


async def test_every_frame_the_server_sends_is_documented(ws, bidder, other_bidder, seller, staff_user, make_lot):
    session = Session()
    until = session.until
    call = database_sync_to_async

    sale, hot, scheduled = await sale_with_lots(seller)
    alice_inbox = await ws.open("/ws/notifications/", user=bidder)
    bob_inbox = await ws.open("/ws/notifications/", user=other_bidder)
    sam_inbox = await ws.open("/ws/notifications/", user=seller)
    sale_room = await ws.open("/ws/auctions/spring/")
    await until(sale_room, EventType.AUCTION_STATUS)
    for user in (bidder, other_bidder):
        await approve(sale, user, staff_user)
    await until(alice_inbox, EventType.REGISTRATION_DECIDED, kind="inbox")

    alice = await ws.open(f"/ws/lots/{hot.pk}/", user=bidder)
    await until(alice, EventType.LOT_STATUS)
    await until(alice, EventType.USERS_COUNT)
    sam = await ws.open(f"/ws/lots/{hot.pk}/", user=seller)
    await until(sam, EventType.LOT_STATUS)

    # Bidding: an answer to the bidder, the bid and the extension to the room, the lead lost to a notice.
    await alice.send({"type": "NEW_BID", "amount": "10.00", "request_id": "first"})
    await until(alice, EventType.BID_ACCEPTED)
    await until(alice, EventType.NEW_BID)
    await until(alice, EventType.LOT_EXTENDED)
    await call(place_bid)(lot_id=hot.pk, bidder=other_bidder, amount="20.00")
    await until(alice_inbox, EventType.OUTBID, kind="inbox")
    await alice.send({"type": "NEW_BID", "amount": "11.00", "request_id": "low"})
    await until(alice, EventType.BID_REJECTED)
    await alice.send({"type": "NEW_BID", "amount": "twelve", "request_id": "bad"})
    await until(alice, EventType.ERROR)
    await alice.send({"type": "GET_HISTORY", "limit": 5})
    await until(alice, EventType.BID_HISTORY)
    await alice.send({"type": "PING"})
    await until(alice, EventType.PONG)

    # The chat.
    await alice.send({"type": "CHAT", "text": "Is the shade original?"})
    message = await until(alice, EventType.CHAT_MESSAGE)
    await alice.send({"type": "GET_CHAT", "limit": 5})
    await until(alice, EventType.CHAT_HISTORY)
    await sam.send({"type": "HIDE_CHAT", "id": message["id"]})
    await until(alice, EventType.CHAT_HIDDEN)

    # Staff and the clock.
    await call(lot_services.update_lot)(lot_id=hot.pk, actor=staff_user, changes={"title": "Art deco table lamp"})
    await until(alice, EventType.LOT_UPDATED)
    await call(lot_services.watch_lot)(lot_id=hot.pk, user=bidder)
    assert await announce_ending_soon(hot) is not None
    await until(alice_inbox, EventType.ENDING_SOON, kind="inbox")
    await call(void_bids)(lot_id=hot.pk, bidder_id=other_bidder.pk, actor=staff_user)
    await until(alice, EventType.BIDS_VOIDED)
    await until(bob_inbox, EventType.BIDS_VOIDED, kind="inbox")
    await call(lot_services.close_lot)(lot_id=hot.pk, actor=staff_user)
    await until(alice, EventType.AUCTION_ENDED)
    await until(alice_inbox, EventType.WON, kind="inbox")
    await until(sam_inbox, EventType.LOT_SOLD, kind="inbox")

    # The sale's other lots: one opened and closed unsold, one cancelled under its leader.
    await call(lot_services.open_lot)(lot_id=scheduled.pk, actor=staff_user)
    await until(sale_room, EventType.LOT_OPENED)
    await call(lot_services.close_lot)(lot_id=scheduled.pk, actor=staff_user)
    await until(sam_inbox, EventType.LOT_UNSOLD, kind="inbox")
    cancelled = await call(make_lot)(auction=sale)
    await call(place_bid)(lot_id=cancelled.pk, bidder=bidder, amount="10.00")
    await call(lot_services.cancel_lot)(lot_id=cancelled.pk, actor=staff_user)
    await until(alice_inbox, EventType.LOT_CANCELLED, kind="inbox")
    await until(sale_room, EventType.AUCTION_ENDED)

    session.check()
