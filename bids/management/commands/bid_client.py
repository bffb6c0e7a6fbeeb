"""A terminal client for a lot's room: prints its events, places bids typed at the prompt."""

import asyncio
import json
import sys
import uuid
from urllib.parse import urlencode, urlsplit
from urllib.request import Request, urlopen

from django.core.management.base import BaseCommand, CommandError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HELP = """Type:  150            bid 150
       150 200        bid 150 with a hidden maximum of 200
       buy            buy now
       history        the last 20 bids
       close          close the lot (seller or staff)
       quit"""


def fetch_token(base_url: str, username: str, password: str) -> str:
    request = Request(  # noqa: S310 (the URL is the user's own server)
        f"{base_url}/api/auth/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urlopen(request, timeout=10) as response:  # noqa: S310
        return json.load(response)["access"]


def frame_for(line: str) -> dict | None:
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


class Command(BaseCommand):
    help = "Watch a lot's room and bid from the terminal."

    def add_arguments(self, parser):
        parser.add_argument("lot_id", type=int)
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server's base URL.")
        parser.add_argument("--token", help="A JWT access token (or use --username/--password).")
        parser.add_argument("--username")
        parser.add_argument("--password")
        parser.add_argument("--since", type=int, help="Replay events after this seq first.")

    def handle(self, *args, lot_id: int, url: str, token, username, password, since, **options):
        base_url = url.rstrip("/")
        if token is None and username:
            token = fetch_token(base_url, username, password or "")
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = {k: v for k, v in {"token": token, "since": since}.items() if v is not None}
        ws_url = f"{scheme}://{parts.netloc}/ws/lots/{lot_id}/" + (f"?{urlencode(query)}" if query else "")
        try:
            asyncio.run(self.session(ws_url, origin=f"{parts.scheme}://{parts.netloc}"))
        except (OSError, ConnectionClosed) as exc:
            raise CommandError(f"connection ended: {exc}") from exc

    async def session(self, ws_url: str, *, origin: str) -> None:
        async with connect(ws_url, origin=origin) as socket:
            self.stdout.write(HELP)
            printer = asyncio.create_task(self.print_events(socket))
            loop = asyncio.get_running_loop()
            while not printer.done():
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or line.strip().lower() == "quit":
                    break
                frame = frame_for(line)
                if frame is not None:
                    await socket.send(json.dumps(frame))
            printer.cancel()

    async def print_events(self, socket) -> None:
        async for text in socket:
            event = json.loads(text)
            self.stdout.write(f"{event.pop('type')}: {json.dumps(event)}")
        self.stdout.write(f"closed ({socket.close_code})")
