"""A terminal client for a lot's room: prints its events, places bids typed at the prompt, reconnects when cut off.

Every failure ends in a `CommandError` (one line, exit status 1); what the lines and frames look like is in
`bids.terminal`.
"""

import argparse
import asyncio
import codecs
import contextlib
import getpass
import http.client
import json
import os
import socket
import ssl
import sys
import threading
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from django.core.management.base import BaseCommand, CommandError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from accounts.middleware import CLOSE_UNAUTHORIZED
from bids.terminal import HELP, RoomView, ServerAddress, ends_session, frame_for, printable, token_expired

# Seconds for the login request and for the WebSocket handshake.
TIMEOUT = 10
# Waits before reconnecting: doubled after each failed attempt up to the last, back to the first once a
# connection delivers frames again.
FIRST_DELAY, MAX_DELAY = 0.5, 10.0
# Seconds the server's clock may run ahead of this one: a token that expires this soon counts as expired.
CLOCK_SKEW = 30
# The protocol's "no such lot" (README, "WebSocket protocol"); realtime's constant is out of reach here:
# bids never imports realtime.
CLOSE_NOT_FOUND = 4404
# What the other close codes mean, for the line that says the connection was lost.
CLOSE_MEANINGS = {
    1000: "closed by the server",
    1001: "the server is going away",
    1006: "the connection dropped",
    1011: "server error",
    1012: "the server is restarting",
    4008: "this client read too slowly",
    4009: "a typed line was too long",
    4429: "too many open sockets from this address",
}

# The frames that answer a request of yours (each request gets one): piped input waits for them before leaving.
ANSWERS = {"BID_ACCEPTED", "BID_REJECTED", "ERROR", "BID_HISTORY", "PONG", "AUCTION_ENDED"}


def next_delay(delay: float) -> float:
    return min(delay * 2, MAX_DELAY)


class Unreachable(Exception):
    """The server cannot be reached, or failed in a way worth trying again later (5xx, throttled)."""


def network_reason(error: BaseException) -> str:
    """A network failure in a few words: `connection refused`, `unknown host (...)`, ..."""
    if isinstance(error, URLError) and not isinstance(error, HTTPError):
        if not isinstance(error.reason, BaseException):
            return printable(error.reason)
        error = error.reason
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror})"
    if isinstance(error, TimeoutError):
        return f"no answer within {TIMEOUT} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({error.reason or error})"
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno).lower()
    return printable(error) or type(error).__name__


def error_detail(error: HTTPError) -> str:
    """The API's `detail` of an error answer, or its HTTP status."""
    try:
        detail = json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return printable(detail) if isinstance(detail, str) and detail else f"HTTP {error.code} {error.reason}"


def fetch_token(base_url: str, username: str, password: str) -> str:
    """An access token from the token API.

    Raises CommandError when the server refuses the login, Unreachable when it cannot be reached or failed.
    """
    request = Request(  # noqa: S310 (the URL is checked: http or https)
        f"{base_url}/api/auth/token/",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            body = response.read()
    except HTTPError as error:
        detail = error_detail(error)
        if error.code >= 500 or error.code == 429:
            raise Unreachable(f"the login failed: {detail}") from None
        if error.code in (400, 401, 403):
            raise CommandError(f"login refused: {detail}") from None
        raise CommandError(f"the login was answered with {detail}") from None
    except (URLError, OSError, http.client.HTTPException) as error:
        raise Unreachable(network_reason(error)) from None
    try:
        return json.loads(body)["access"]
    except (ValueError, TypeError, KeyError):
        raise CommandError(f"{base_url} did not answer the login like the auction API (no access token)") from None


def ask_password(username: str) -> str:
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandError("give --password: the input is not a terminal, so the password cannot be asked for")
    try:
        return getpass.getpass(f"Password for {username}: ")
    except EOFError:
        raise CommandError("no password given") from None


def seq_number(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"a seq is a whole number, 0 or more, not {text!r}")
    return int(text)


class TypedLines:
    """Lines typed at the prompt (None at the end of input), read by a daemon thread straight from the descriptor.

    A read blocked on the terminal never keeps the client from exiting, and, using no Python file object,
    the thread holds no lock the interpreter needs at exit.
    """

    def __init__(self, stream) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.next = asyncio.ensure_future(self.queue.get())
        try:
            fd, encoding = stream.fileno(), stream.encoding or "utf-8"
        except (AttributeError, OSError, ValueError):  # No input at all (closed, or None).
            self.queue.put_nowait(None)
            return
        threading.Thread(target=self._read, args=(fd, encoding), daemon=True).start()

    def take(self) -> str | None:
        """The line `next` waited for; then `next` waits for the one after."""
        line = self.next.result()
        self.next = asyncio.ensure_future(self.queue.get())
        return line

    def _read(self, fd: int, encoding: str) -> None:
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *lines, pending = pending.split("\n")
            if not chunk:
                lines += [pending, None] if pending else [None]
            for line in lines:
                try:
                    self.loop.call_soon_threadsafe(self.queue.put_nowait, line)
                except RuntimeError:  # The loop is closed: the client has ended.
                    return
            if not chunk:
                return


class RoomClient:
    """One lot's room over a WebSocket, reconnected with `?since=<last seq>` until a final close or the user quits."""

    def __init__(
        self,
        command: BaseCommand,
        *,
        address: ServerAddress,
        lot_id: int,
        token: str | None,
        credentials: tuple[str, str] | None,
        since: int | None,
        raw: bool,
    ) -> None:
        self.command, self.address, self.lot_id = command, address, lot_id
        self.token, self.credentials = token, credentials
        self.last_seq = since
        self.raw = raw
        self.view = RoomView()

    def notice(self, text: str) -> None:
        """About the connection, on stderr: stdout carries only the room's frames."""
        self.command.stderr.write(text, style_func=str)

    async def run(self) -> None:
        self.lines = TypedLines(sys.stdin)
        delay, connected = FIRST_DELAY, False
        while True:
            try:
                connection = await self.open()
            except Unreachable as error:
                # Before the first connection, a failure is the user's to fix; after it, an outage to wait out.
                if not connected:
                    raise CommandError(f"cannot connect to {self.address.base}: {error}") from None
            else:
                replay = f": replaying the events after seq {self.last_seq}" if self.last_seq is not None else ""
                greeting = f"connection back{replay}" if connected else HELP
                connected = True
                code = await self.converse(connection, greeting)
                if code is None:
                    return
                if self.arrived.is_set():
                    delay = FIRST_DELAY
                self.after_close(code)
            if await self.pause(delay):
                return
            delay = next_delay(delay)

    async def open(self) -> ClientConnection:
        """The room's socket, after a login if the token is missing; Unreachable if worth trying again."""
        if self.token is None and self.credentials is not None:
            self.token = await asyncio.to_thread(fetch_token, self.address.base, *self.credentials)
        url = self.address.lot_socket(self.lot_id, token=self.token, since=self.last_seq)
        try:
            return await connect(url, origin=self.address.origin, open_timeout=TIMEOUT)
        except InvalidStatus as error:
            status = error.response.status_code
            if status >= 500 or status == 429:
                raise Unreachable(f"the server answered HTTP {status}") from None
            raise CommandError(f"the server refused the WebSocket: HTTP {status}") from None
        except (OSError, TimeoutError, WebSocketException) as error:
            raise Unreachable(network_reason(error)) from None

    def after_close(self, code: int) -> None:
        """Raise CommandError if the close is final; else say the connection is lost (and log in again if due)."""
        if code == CLOSE_NOT_FOUND:
            raise CommandError(f"lot {self.lot_id} does not exist (the server closed the socket with {code})")
        if code == CLOSE_UNAUTHORIZED:
            # The same code says "expired" and "refused" (bad token, sessions ended): the token's own `exp` tells.
            renewable = self.credentials is not None and token_expired(self.token, leeway=CLOCK_SKEW)
            if not renewable:
                given = "the token" if self.token is not None else "anonymous watching: log in with --username"
                raise CommandError(f"the server refused {given} (close code {code})")
            self.token = None
            self.notice(f"the access token expired (close code {code}): logging in again")
            return
        self.notice(f"connection lost ({code}: {CLOSE_MEANINGS.get(code, 'closed')}): reconnecting")

    async def converse(self, connection: ClientConnection, greeting: str) -> int | None:
        """Show the room's frames and send typed lines until one side ends: the close code, or None if the user did.

        The `greeting` and typed lines wait for the room's first frame: a socket the server closes at once
        (4401, 4404) gets only its error, even when the input has already ended.
        """
        self.arrived, self.answered, self.unanswered = asyncio.Event(), asyncio.Event(), 0
        self.answered.set()
        receiving = asyncio.create_task(self.receive(connection))
        try:
            if not await self.until(self.arrived, receiving):
                return receiving.result()
            self.notice(greeting)
            while True:
                await asyncio.wait({receiving, self.lines.next}, return_when=asyncio.FIRST_COMPLETED)
                if self.lines.next.done():
                    line = self.lines.take()
                    if ends_session(line):
                        if line is None:  # Piped input: the answers to what it sent first.
                            await self.until(self.answered, receiving, timeout=TIMEOUT)
                        await connection.close()
                        return None
                    if (frame := frame_for(line)) is not None:
                        self.unanswered += 1
                        self.answered.clear()
                        with contextlib.suppress(ConnectionClosed):  # `receiving` reports how it closed.
                            await connection.send(json.dumps(frame))
                elif receiving.done():
                    return receiving.result()
        finally:
            receiving.cancel()

    @staticmethod
    async def until(event: asyncio.Event, receiving: asyncio.Task, timeout: float | None = None) -> bool:
        """Wait for `event` while the connection lasts; whether it happened."""
        waiting = asyncio.ensure_future(event.wait())
        await asyncio.wait({waiting, receiving}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        return event.is_set()

    async def receive(self, connection: ClientConnection) -> int:
        with contextlib.suppress(ConnectionClosed):
            async for text in connection:
                self.show(text)
        return connection.close_code

    def show(self, text: str | bytes) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            self.notice(f"not a JSON frame: {printable(text)[:200]}")
            return
        self.arrived.set()
        if isinstance(frame, dict):
            if type(frame.get("seq")) is int:
                self.last_seq = frame["seq"]  # A room event's (LOT_STATUS included): what `?since=` resumes after.
            if frame.get("type") in ANSWERS and self.unanswered:
                self.unanswered -= 1
                if not self.unanswered:
                    self.answered.set()
        self.command.stdout.write(json.dumps(frame, separators=(",", ":")) if self.raw else self.view.line(frame))
        self.command.stdout.flush()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds` before reconnecting; True if the user ended meanwhile. Lines typed meanwhile are not sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            await asyncio.wait({self.lines.next}, timeout=left)
            if self.lines.next.done():
                line = self.lines.take()
                if ends_session(line):
                    return True
                if frame_for(line) is not None:
                    self.notice("not connected: not sent")
        return False


class Command(BaseCommand):
    help = "Watch a lot's room and bid from the terminal."

    def add_arguments(self, parser):
        parser.add_argument("lot_id", type=int)
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server's base URL (http or https).")
        parser.add_argument("--token", help="A JWT access token (or use --username).")
        parser.add_argument("--username", help="Log in as this user; the password is asked for.")
        parser.add_argument("--password", help="For scripts: the password, instead of the prompt.")
        parser.add_argument("--since", type=seq_number, help="Replay the events after this seq first.")
        parser.add_argument("--json", action="store_true", help="Print the raw frames, one JSON object a line.")

    def handle(self, *args, lot_id: int, url: str, token, username, password, since, json: bool, **options):
        address = ServerAddress(url)
        if token and username:
            raise CommandError("give --token or --username, not both")
        if password is not None and not username:
            raise CommandError("--password goes with --username")
        try:
            credentials = (username, password if password is not None else ask_password(username)) if username else None
            client = RoomClient(
                self, address=address, lot_id=lot_id, token=token, credentials=credentials, since=since, raw=json
            )
            asyncio.run(client.run())
        except KeyboardInterrupt:
            raise CommandError("interrupted", returncode=130) from None
