"""What `manage.py bid_client` shows and sends: the server's URL checked, typed lines as frames, frames as lines.

Pure functions and one small state holder, no I/O: the command does the networking.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.core.management.base import CommandError

HELP = """Type:  150            bid 150
       150 200        bid 150 with a hidden maximum of 200
       buy            buy now
       history        the last 20 bids
       close          close the lot (seller or staff)
       quit"""

FRAME_TYPE = re.compile(r"[A-Z]+(?:_[A-Z]+)*")


def ends_session(line: str | None) -> bool:
    """End of input (None) or `quit`: the client leaves for good."""
    return line is None or line.strip().lower() == "quit"


class ServerAddress:
    """The server's base URL, checked (http or https, a host, a valid port), and the lot room's URLs from it."""

    def __init__(self, url: str) -> None:
        url = url.strip()
        if "://" not in url:
            raise CommandError(f"--url needs a scheme: http://{url} or https://{url}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise CommandError(f"--url must start with http:// or https://, not {parts.scheme}://")
        if not parts.hostname:
            raise CommandError(f"--url has no host: {url}")
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise CommandError(f"--url has an invalid host: {parts.hostname}") from None
        try:
            parts.port  # noqa: B018 (reading the port is the check)
        except ValueError:
            raise CommandError(f"--url has an invalid port: {url}") from None
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._ws_base = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}{parts.path.rstrip('/')}"

    def lot_socket(self, lot_id: int, *, token: str | None, since: int | None) -> str:
        query = {name: value for name, value in {"token": token, "since": since}.items() if value is not None}
        return f"{self._ws_base}/ws/lots/{lot_id}/" + (f"?{urlencode(query)}" if query else "")


def token_expired(token: str | None, *, leeway: float = 0, now: float | None = None) -> bool:
    """Whether a JWT's `exp` is past, or less than `leeway` seconds away.

    Read, not verified: the server judges the token; this only tells an expired token from a refused one.
    A token without a readable `exp` counts as not expired.
    """
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"]) <= (time.time() if now is None else now) + leeway
    except (AttributeError, IndexError, ValueError, KeyError, TypeError):  # binascii.Error is a ValueError.
        return False


def frame_for(line: str) -> dict | None:
    """The frame a typed line sends, or None for a blank line."""
    words = line.split()
    if not words:
        return None
    command = words[0].lower()
    if command == "buy":
        return {"type": "BUY_NOW", "request_id": uuid.uuid4().hex}
    if command == "history":
        return {"type": "GET_HISTORY", "limit": 20}
    if command == "close":
        return {"type": "CLOSE_AUCTION"}
    if command == "ping":
        return {"type": "PING"}
    frame = {"type": "NEW_BID", "amount": words[0], "request_id": uuid.uuid4().hex}
    if len(words) > 1:
        frame["max_amount"] = words[1]
    return frame


def printable(text: object) -> str:
    """`text` safe for a terminal: control characters (escape sequences in a title or a chat) shown escaped."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))


class RoomView:
    """Frames of a lot's room as lines for people.

    Remembers what later frames leave out: the lot's currency and your alias (both from `LOT_STATUS`,
    the alias also from your `BID_ACCEPTED`), so amounts carry their currency and your bids say "you".
    """

    def __init__(self) -> None:
        self.currency: str | None = None
        self.my_alias: str | None = None

    def line(self, frame: Any) -> str:
        """One line per frame (a history: a line per row under its own); every row printable."""
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return f"FRAME  {printable(json.dumps(frame))}"
        # Only protocol type names (`NEW_BID`) pick a method: never another attribute of this object.
        known = FRAME_TYPE.fullmatch(frame["type"]) is not None
        describe = getattr(self, f"_{frame['type'].lower()}", None) if known else None
        try:
            text = describe(frame) if describe is not None else None
        except (AttributeError, KeyError, TypeError, ValueError):
            text = None  # A frame not shaped as the protocol says: shown as it came.
        if text is None:
            rest = {name: value for name, value in frame.items() if name != "type"}
            text = json.dumps(rest)
        rows = [text] if isinstance(text, str) else text
        return f"{printable(frame['type'])}  " + "\n".join(printable(row) for row in rows)

    def money(self, amount: Any) -> str:
        if amount is None:
            return "-"
        return f"{amount} {self.currency}" if self.currency else str(amount)

    def who(self, alias: Any) -> str:
        return f"{alias} (you)" if alias is not None and alias == self.my_alias else str(alias)

    @staticmethod
    def seq(frame: dict) -> str:
        return f"  (seq {frame['seq']})" if "seq" in frame else ""

    def _lot_status(self, frame: dict) -> str:
        lot = frame["lot"]
        self.currency = lot.get("currency") or self.currency
        self.my_alias = lot.get("my_alias") or self.my_alias
        parts = [f'lot {lot["id"]} "{lot.get("title")}"', str(lot.get("status"))]
        if lot.get("current_price") is None:
            parts.append(f"starting price {self.money(lot.get('starting_price'))}")
        else:
            parts.append(f"price {self.money(lot['current_price'])}")
        if lot.get("min_next_bid") is not None:
            parts.append(f"next bid {self.money(lot['min_next_bid'])}")
        count = lot.get("bid_count", 0)
        parts.append(f"{count} bid{'' if count == 1 else 's'}")
        if lot.get("high_bidder"):
            parts.append(f"leader {self.who(lot['high_bidder'])}")
        if lot.get("ends_at"):
            parts.append(f"ends {lot['ends_at']}")
        if self.my_alias:
            parts.append(f"you are {self.my_alias}")
        return "  ".join(parts) + self.seq(frame)

    def _users_count(self, frame: dict) -> str:
        return f"{frame['count']} watching"

    def _new_bid(self, frame: dict) -> str:
        bid, lot = frame["bid"], frame.get("lot") or {}
        proxy = " (proxy)" if bid.get("is_proxy") else ""
        line = f"lot {frame['lot_id']}  {self.money(bid['amount'])}  by {self.who(bid['bidder'])}{proxy}"
        if lot.get("high_bidder") not in (None, bid["bidder"]):  # A proxy maximum kept the lead.
            line += f"  leader {self.who(lot['high_bidder'])}"
        if lot.get("min_next_bid") is not None:
            line += f"  next bid {self.money(lot['min_next_bid'])}"
        return line + self.seq(frame)

    def _lot_extended(self, frame: dict) -> str:
        return f"lot {frame['lot_id']}  now ends {frame['ends_at']}" + self.seq(frame)

    def _lot_opened(self, frame: dict) -> str:
        lot = frame["lot"]
        line = f"lot {frame['lot_id']}  {lot.get('status')}  starts {lot.get('starts_at')}  ends {lot.get('ends_at')}"
        if frame.get("reason"):
            line += f"  reason: {frame['reason']}"
        return line + self.seq(frame)

    _lot_updated = _lot_opened

    def _auction_ended(self, frame: dict) -> str:
        lot = frame["lot"]
        if lot.get("winner"):
            outcome = f"won by {self.who(lot['winner'])} at {self.money(lot.get('final_price'))}"
        elif lot.get("status") == "cancelled":
            outcome = "no winner"
        else:
            outcome = "no winner: unsold"
        return f"lot {frame['lot_id']}  {lot.get('status')}  {outcome}" + self.seq(frame)

    def _bids_voided(self, frame: dict) -> str:
        lot = frame.get("lot") or {}
        return (
            f"lot {frame['lot_id']}  {frame['voided']} bid(s) by {self.who(frame['bidder'])} voided"
            f"  price {self.money(lot.get('current_price'))}" + self.seq(frame)
        )

    def _bid_accepted(self, frame: dict) -> str:
        bid = frame["bid"]
        self.my_alias = bid.get("bidder") or self.my_alias
        line = f"{self.money(bid['amount'])}"
        if bid.get("max_amount") is not None:
            line += f" (maximum {self.money(bid['max_amount'])})"
        line += f"  as {bid.get('bidder')}"
        line += "  leading" if frame.get("leading") else "  outbid at once by a proxy maximum"
        if frame.get("min_next_bid") is not None:
            line += f"  next bid {self.money(frame['min_next_bid'])}"
        if frame.get("replayed"):
            line += "  (placed before: replayed)"
        return line

    def _bid_rejected(self, frame: dict) -> str:
        line = f"{frame['code']}: {frame.get('message')}"
        if frame.get("min_next_bid") is not None:
            line += f"  next bid {self.money(frame['min_next_bid'])}"
        if frame.get("retry_after") is not None:
            line += f"  retry in {frame['retry_after']} s"
        return line

    def _error(self, frame: dict) -> str:
        return f"{frame['code']}: {frame.get('message')}"

    def _bid_history(self, frame: dict) -> list[str]:
        bids = frame["bids"]
        if not bids:
            return ["no bids yet"]
        rows = [f"{len(bids)} bid{'' if len(bids) == 1 else 's'}, newest first"]
        for bid in bids:
            marks = "".join(
                mark for flag, mark in (("is_proxy", "  (proxy)"), ("is_buy_now", "  (buy now)")) if bid.get(flag)
            )
            bidder = f"{bid['bidder']} (you)" if bid.get("is_you") else str(bid["bidder"])
            rows.append(f"  {self.money(bid['amount'])}  by {bidder}  at {bid.get('created_at')}{marks}")
        return rows

    def _chat_message(self, frame: dict) -> str:
        seller = " (seller)" if frame.get("is_seller") else ""
        return f"{frame['user']}{seller}: {frame['text']}"

    def _chat_hidden(self, frame: dict) -> str:
        return f"message {frame['id']} hidden"

    def _chat_history(self, frame: dict) -> list[str]:
        messages = frame["messages"]
        rows = [f"{len(messages)} message(s), newest first"]
        rows += [f"  {message['user']}: {message['text']}" for message in messages]
        return rows

    def _pong(self, frame: dict) -> str:
        return f"server time {frame['server_time']}"
