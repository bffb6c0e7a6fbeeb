"""`manage.py bid_client`: its pure parts (URL checks, lines for people, token expiry), then the command itself
as a subprocess against a real `manage.py serve`: one line per failure, readable and raw frames, reconnecting.

The servers run on their own SQLite file in the first leg and on the test database and Redis in the second.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management.base import CommandError

from accounts.middleware import CLOSE_UNAUTHORIZED
from bids.management.commands import bid_client
from bids.terminal import RoomView, ServerAddress, frame_for, token_expired
from conftest import ON_SERVICES
from realtime.consumers import CLOSE_NOT_FOUND
from testsupport.live_servers import database_url_for_tests
from testsupport.servers import (
    BASE_DIR,
    MANAGE,
    ServeProcess,
    TokenRefused,
    create_lot,
    free_ports,
    http,
    production_env,
    register_and_log_in,
)

PASSWORD = "correct-horse-battery-staple"
# What must happen may take this long on a loaded machine; only a failing test waits it out.
GENEROUS = 60


# --- Pure parts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8000", "--url needs a scheme: http://127.0.0.1:8000 or https://127.0.0.1:8000"),
        ("localhost:8000", "--url needs a scheme"),
        ("ws://127.0.0.1:8000", "--url must start with http:// or https://, not ws://"),
        ("ftp://example.com", "--url must start with http:// or https://, not ftp://"),
        ("http://", "--url has no host"),
        ("http://127.0.0.1:99999", "--url has an invalid port"),
        ("http://a..b/", "--url has an invalid host"),
    ],
)
def test_a_bad_url_is_one_clear_error(url, message):
    with pytest.raises(CommandError) as raised:
        ServerAddress(url)
    assert str(raised.value).startswith(message)


def test_the_room_url_follows_the_servers_scheme_and_carries_token_and_since():
    plain = ServerAddress(" http://127.0.0.1:8000/ ")
    assert plain.base == "http://127.0.0.1:8000"
    assert plain.origin == "http://127.0.0.1:8000"
    assert plain.lot_socket(7, token=None, since=None) == "ws://127.0.0.1:8000/ws/lots/7/"
    secure = ServerAddress("https://auctions.example.com/")
    assert secure.lot_socket(7, token="a.b.c", since=12) == "wss://auctions.example.com/ws/lots/7/?token=a.b.c&since=12"
    assert secure.lot_socket(7, token=None, since=0) == "wss://auctions.example.com/ws/lots/7/?since=0"


def test_typed_lines_become_frames():
    assert frame_for("   ") is None
    bid = frame_for("150 200")
    assert {key: bid[key] for key in ("type", "amount", "max_amount")} == {
        "type": "NEW_BID",
        "amount": "150",
        "max_amount": "200",
    }
    assert bid["request_id"] != frame_for("150")["request_id"]
    assert frame_for("BUY")["type"] == "BUY_NOW"
    assert frame_for("history") == {"type": "GET_HISTORY", "limit": 20}


LOT = {
    "id": 1,
    "title": "Ship in a bottle",
    "status": "open",
    "currency": "EUR",
    "starting_price": "20.00",
    "current_price": "30.00",
    "min_next_bid": "31.00",
    "bid_count": 2,
    "high_bidder": "Bidder 2",
    "my_alias": "Bidder 2",
    "ends_at": "2026-11-21T11:00:00Z",
}


def test_lot_status_says_the_state_and_teaches_the_currency_and_your_alias():
    view = RoomView()
    line = view.line({"type": "LOT_STATUS", "lot_id": 1, "seq": 4, "lot": LOT, "registration": None})
    assert line == (
        'LOT_STATUS  lot 1 "Ship in a bottle"  open  price 30.00 EUR  next bid 31.00 EUR  2 bids'
        "  leader Bidder 2 (you)  ends 2026-11-21T11:00:00Z  you are Bidder 2  (seq 4)"
    )
    new_bid = {
        "type": "NEW_BID",
        "lot_id": 1,
        "seq": 5,
        "bid": {"id": 9, "amount": "35.00", "bidder": "Bidder 1", "is_proxy": False},
        "lot": {"current_price": "35.00", "min_next_bid": "36.00", "high_bidder": "Bidder 1"},
    }
    assert view.line(new_bid) == "NEW_BID  lot 1  35.00 EUR  by Bidder 1  next bid 36.00 EUR  (seq 5)"


def test_a_bid_that_a_proxy_maximum_answered_names_the_leader():
    view = RoomView()
    view.currency, view.my_alias = "USD", "Bidder 2"
    frame = {
        "type": "NEW_BID",
        "lot_id": 3,
        "seq": 6,
        "bid": {"amount": "40.00", "bidder": "Bidder 1", "is_proxy": False},
        "lot": {"min_next_bid": "41.00", "high_bidder": "Bidder 2"},
    }
    assert (
        view.line(frame) == "NEW_BID  lot 3  40.00 USD  by Bidder 1  leader Bidder 2 (you)  next bid 41.00 USD  (seq 6)"
    )


def test_answers_to_your_requests_read_as_sentences():
    view = RoomView()
    view.currency = "USD"
    accepted = {
        "type": "BID_ACCEPTED",
        "request_id": "r1",
        "code": "accepted",
        "leading": True,
        "replayed": False,
        "bid": {"amount": "31.00", "bidder": "Bidder 2", "max_amount": "50.00"},
        "min_next_bid": "32.00",
        "lot": {"seq": 5},
    }
    assert (
        view.line(accepted) == "BID_ACCEPTED  31.00 USD (maximum 50.00 USD)  as Bidder 2  leading  next bid 32.00 USD"
    )
    assert view.my_alias == "Bidder 2"
    rejected = {
        "type": "BID_REJECTED",
        "code": "bid_too_low",
        "message": "Bid at least 32.00.",
        "min_next_bid": "32.00",
    }
    assert view.line(rejected) == "BID_REJECTED  bid_too_low: Bid at least 32.00.  next bid 32.00 USD"
    error = {"type": "ERROR", "code": "invalid_amount", "message": "amount is too large.", "request_id": None}
    assert view.line(error) == "ERROR  invalid_amount: amount is too large."
    history = {
        "type": "BID_HISTORY",
        "bids": [
            {"amount": "31.00", "bidder": "Bidder 2", "is_you": True, "created_at": "T2", "is_proxy": True},
            {"amount": "30.00", "bidder": "Bidder 1", "is_you": False, "created_at": "T1", "is_buy_now": False},
        ],
    }
    assert view.line(history) == (
        "BID_HISTORY  2 bids, newest first\n"
        "  31.00 USD  by Bidder 2 (you)  at T2  (proxy)\n"
        "  30.00 USD  by Bidder 1  at T1"
    )


def test_the_end_of_a_lot_says_who_won():
    view = RoomView()
    view.currency, view.my_alias = "USD", "Bidder 1"
    sold = {"id": 1, "status": "closed", "winner": "Bidder 1", "final_price": "90.00", "closed_at": "T"}
    assert view.line({"type": "AUCTION_ENDED", "lot_id": 1, "seq": 9, "lot": sold}) == (
        "AUCTION_ENDED  lot 1  closed  won by Bidder 1 (you) at 90.00 USD  (seq 9)"
    )
    unsold = {"id": 1, "status": "closed", "winner": None, "final_price": None, "closed_at": "T"}
    assert view.line({"type": "AUCTION_ENDED", "lot_id": 1, "seq": 9, "lot": unsold}) == (
        "AUCTION_ENDED  lot 1  closed  no winner: unsold  (seq 9)"
    )


def test_text_from_others_cannot_drive_the_terminal_or_forge_lines():
    line = RoomView().line({"type": "CHAT_MESSAGE", "user": "mallory", "text": "\x1b[2Jhi\nNEW_BID  lot 1  1.00"})
    assert line == "CHAT_MESSAGE  mallory: \\x1b[2Jhi\\nNEW_BID  lot 1  1.00"
    assert "\n" not in line and "\x1b" not in line


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        ({"type": "NEW_BID", "lot_id": 1, "seq": 2, "bid": None}, 'NEW_BID  {"lot_id": 1, "seq": 2, "bid": null}'),
        ({"type": "SOMETHING_NEW", "x": 1}, 'SOMETHING_NEW  {"x": 1}'),
        ({"type": "__CLASS__"}, "__CLASS__  {}"),
        ([1, 2], "FRAME  [1, 2]"),
    ],
)
def test_a_frame_of_another_shape_is_shown_as_it_came(frame, line):
    assert RoomView().line(frame) == line


def jwt_expiring_at(exp: float) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
    return f"header.{payload}.signature"


def test_an_expired_token_is_told_from_a_live_one():
    now = 1_000_000.0
    assert token_expired(jwt_expiring_at(now - 1), now=now)
    assert not token_expired(jwt_expiring_at(now + 60), now=now)
    assert token_expired(jwt_expiring_at(now + 20), leeway=30, now=now)
    assert not token_expired("not-a-jwt", now=now)
    assert not token_expired(None, now=now)


def test_the_clients_final_close_codes_are_the_servers():
    assert bid_client.CLOSE_NOT_FOUND == CLOSE_NOT_FOUND
    assert bid_client.CLOSE_UNAUTHORIZED == CLOSE_UNAUTHORIZED


def test_reconnecting_backs_off_from_half_a_second_to_ten():
    delays = [bid_client.FIRST_DELAY]
    while len(delays) < 8:
        delays.append(bid_client.next_delay(delays[-1]))
    assert delays == [0.5, 1, 2, 4, 8, 10, 10, 10]


class FakeStdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_password_is_asked_for_at_a_terminal(monkeypatch):
    prompts = []
    monkeypatch.setattr(bid_client.sys, "stdin", FakeStdin(tty=True))
    monkeypatch.setattr(bid_client.getpass, "getpass", lambda prompt: prompts.append(prompt) or "s3cret")
    assert bid_client.ask_password("bob") == "s3cret"
    assert prompts == ["Password for bob: "]


def test_without_a_terminal_a_missing_password_is_an_error_not_a_wait(monkeypatch):
    monkeypatch.setattr(bid_client.sys, "stdin", FakeStdin(tty=False))
    monkeypatch.setattr(bid_client.getpass, "getpass", lambda prompt: pytest.fail("prompted without a terminal"))
    with pytest.raises(CommandError, match="give --password"):
        bid_client.ask_password("bob")


# --- The command against real servers -------------------------------------------------------------


class Client:
    """`manage.py bid_client` as a subprocess whose input stays open until `finish()`."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out, self.err = tmp_path / "client.out", tmp_path / "client.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [*MANAGE, "bid_client", *args], cwd=BASE_DIR, stdin=subprocess.PIPE, stdout=out, stderr=err
            )

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, *, in_stderr: bool = False, after: int = 0) -> int:
        """Until `text` appears (past offset `after`) in the output; the offset just past it."""
        read = self.stderr if in_stderr else self.stdout
        deadline = time.monotonic() + GENEROUS
        while (found := read().find(text, after)) < 0:
            if self.process.poll() is not None and read().find(text, after) < 0:
                raise AssertionError(f"exited ({self.process.returncode}) without {text!r}:\n{self.report()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not within {GENEROUS} s:\n{self.report()}")
            time.sleep(0.05)
        return found + len(text)

    def type(self, line: str) -> None:
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()

    def finish(self) -> int:
        """End the input and wait for the exit: its status."""
        if not self.process.stdin.closed:
            self.process.stdin.close()
        return self.process.wait(GENEROUS)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if not self.process.stdin.closed:
            self.process.stdin.close()

    def report(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{self.stderr()[-4000:]}"


@contextmanager
def client(tmp_path: Path, *args: str) -> Iterator[Client]:
    running = Client(tmp_path, *args)
    try:
        yield running
    finally:
        running.stop()


def failing_run(tmp_path: Path, *args: str) -> str:
    """Run the client to its exit with its input held open; assert it failed in one line, which is returned."""
    with client(tmp_path, *args) as running:
        status = running.process.wait(GENEROUS)
        stderr = running.stderr()
    assert status != 0, running.report()
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("CommandError: ")
    return stderr.strip()


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Production settings on this leg's database: the test database, or a migrated SQLite file of its own."""
    env = production_env(STATIC_ROOT=str(tmp_path / "static"), MEDIA_ROOT=str(tmp_path / "media"), **extra)
    if ON_SERVICES:
        env.update(DATABASE_URL=database_url_for_tests(), REDIS_URL=settings.REDIS_URL)
    else:
        env.update(SQLITE_PATH=str(tmp_path / "db.sqlite3"))
        subprocess.run([*MANAGE, "migrate", "--noinput", "-v0"], env=env, cwd=BASE_DIR, check=True, capture_output=True)
    return env


@contextmanager
def serving(env: dict[str, str], port: int, log: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(port, env, log, "--no-clock")
    try:
        server.wait_listening()
        yield server
    except BaseException:
        print(f"--- serve {port} ---\n{server.output()[-4000:]}")
        raise
    finally:
        server.stop()


@pytest.fixture
def server(tmp_path):
    with serving(server_env(tmp_path), free_ports(1), tmp_path / "serve.log") as running:
        yield running


def bid(base_url: str, token: str, lot_id: int, amount: str) -> None:
    reply = http(
        "POST",
        f"{base_url}/api/lots/{lot_id}/bids/",
        json_body={"amount": amount},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status == 201, reply.body


def test_failures_before_any_server_are_one_line(tmp_path):
    nowhere = f"http://127.0.0.1:{free_ports(1)}"
    assert "--url needs a scheme" in failing_run(tmp_path, "1", "--url", "127.0.0.1:8000")
    assert "not ftp://" in failing_run(tmp_path, "1", "--url", "ftp://127.0.0.1:8000")
    assert "give --password" in failing_run(tmp_path, "1", "--url", nowhere, "--username", "bob")
    login = failing_run(tmp_path, "1", "--url", nowhere, "--username", "bob", "--password", "x")
    assert login == f"CommandError: cannot connect to {nowhere}: connection refused"
    socket = failing_run(tmp_path, "1", "--url", nowhere, "--token", "a.b.c")
    assert socket == f"CommandError: cannot connect to {nowhere}: connection refused"


@pytest.mark.django_db(transaction=True)
def test_refusals_by_the_server_are_one_line(tmp_path, server):
    seller = register_and_log_in(server.url, "cli_seller")
    register_and_log_in(server.url, "cli_bob")
    lot_id = create_lot(server.url, seller, ends_in=timedelta(hours=1))

    wrong = failing_run(tmp_path, str(lot_id), "--url", server.url, "--username", "cli_bob", "--password", "wrong")
    assert wrong == "CommandError: login refused: No active account found with the given credentials"
    token = failing_run(tmp_path, str(lot_id), "--url", server.url, "--token", "not-a-token")
    assert token == "CommandError: the server refused the token (close code 4401)"
    missing = failing_run(
        tmp_path, str(lot_id + 1000), "--url", server.url, "--username", "cli_bob", "--password", PASSWORD
    )
    assert missing == f"CommandError: lot {lot_id + 1000} does not exist (the server closed the socket with 4404)"


@pytest.mark.django_db(transaction=True)
def test_frames_read_as_lines_and_typed_bids_are_placed(tmp_path, server):
    seller = register_and_log_in(server.url, "cli_seller")
    other = register_and_log_in(server.url, "cli_other")
    register_and_log_in(server.url, "cli_bob")
    lot_id = create_lot(server.url, seller, ends_in=timedelta(hours=1))

    with client(tmp_path, str(lot_id), "--url", server.url, "--username", "cli_bob", "--password", PASSWORD) as bob:
        bob.wait_for(f'LOT_STATUS  lot {lot_id} "Ship in a bottle"  open  starting price 20.00 USD')
        bid(server.url, other, lot_id, "30.00")
        seen = bob.wait_for(f"NEW_BID  lot {lot_id}  30.00 USD  by Bidder 1  next bid 31.00 USD  (seq 1)")
        bob.type("31")
        bob.wait_for("BID_ACCEPTED  31.00 USD  as Bidder 2  leading  next bid 32.00 USD", after=seen)
        bob.wait_for(f"NEW_BID  lot {lot_id}  31.00 USD  by Bidder 2 (you)  next bid 32.00 USD  (seq 2)", after=seen)
        bob.type("5")
        bob.wait_for("BID_REJECTED  ", after=seen)
        assert bob.finish() == 0
        assert "Traceback" not in bob.stderr()


@pytest.mark.django_db(transaction=True)
def test_json_prints_the_raw_frames_one_a_line(tmp_path, server):
    seller = register_and_log_in(server.url, "cli_seller")
    other = register_and_log_in(server.url, "cli_other")
    lot_id = create_lot(server.url, seller, ends_in=timedelta(hours=1))

    with client(tmp_path, str(lot_id), "--url", server.url, "--json") as watcher:
        watcher.wait_for('"type":"LOT_STATUS"')
        bid(server.url, other, lot_id, "30.00")
        watcher.wait_for('"type":"NEW_BID"')
        assert watcher.finish() == 0
        frames = [json.loads(line) for line in watcher.stdout().splitlines()]
    assert frames[0]["type"] == "LOT_STATUS"
    assert frames[0]["lot"]["currency"] == "USD"
    new_bid = next(frame for frame in frames if frame["type"] == "NEW_BID")
    assert new_bid["lot_id"] == lot_id and new_bid["seq"] == 1
    assert new_bid["bid"]["amount"] == "30.00" and new_bid["bid"]["bidder"] == "Bidder 1"


@pytest.mark.django_db(transaction=True)
def test_after_a_restart_the_client_reconnects_and_replays_what_it_missed(tmp_path):
    env = server_env(tmp_path)
    port = free_ports(2)
    stand_in_port = port + 1
    with ExitStack() as cleanup:
        with serving(env, port, tmp_path / "first.log") as first:
            seller = register_and_log_in(first.url, "cli_seller")
            other = register_and_log_in(first.url, "cli_other")
            register_and_log_in(first.url, "cli_bob")
            lot_id = create_lot(first.url, seller, ends_in=timedelta(hours=1))
            args = (str(lot_id), "--url", first.url, "--username", "cli_bob", "--password", PASSWORD)
            bob = cleanup.enter_context(client(tmp_path, *args))
            bob.wait_for(f"LOT_STATUS  lot {lot_id}")
        # The first server has stopped, with bob connected to it.
        lost = bob.wait_for("connection lost (", in_stderr=True)
        # A bid while bob is away, through another server on the same database.
        with serving(env, stand_in_port, tmp_path / "stand-in.log") as stand_in:
            bid(stand_in.url, other, lot_id, "30.00")
        with serving(env, port, tmp_path / "second.log"):
            bob.wait_for("connection back: replaying the events after seq 0", in_stderr=True, after=lost)
            bob.wait_for(f"NEW_BID  lot {lot_id}  30.00 USD  by Bidder 1  next bid 31.00 USD  (seq 1)")
            assert bob.finish() == 0
        assert "Traceback" not in bob.stderr()


@pytest.mark.django_db(transaction=True)
def test_when_the_token_expires_the_client_logs_in_again_and_misses_nothing(tmp_path):
    # Short-lived tokens: the server closes the socket (4401) when bob's expires.
    env = server_env(tmp_path, JWT_ACCESS_SECONDS="3")
    with serving(env, free_ports(1), tmp_path / "serve.log") as server:
        for username in ("cli_seller", "cli_other", "cli_bob"):
            register_and_log_in(server.url, username)
        # A 3 s token may expire between the log-in and its use on a loaded machine: each call logs in afresh.
        lot_id = with_fresh_token(server.url, "cli_seller", lambda token: create_lot(server.url, token, ends_in=HOUR))
        with client(tmp_path, str(lot_id), "--url", server.url, "--username", "cli_bob", "--password", PASSWORD) as bob:
            renewed = bob.wait_for("the access token expired (close code 4401): logging in again", in_stderr=True)
            bob.wait_for("connection back", in_stderr=True, after=renewed)
            with_fresh_token(server.url, "cli_other", lambda token: place_bid(server.url, token, lot_id, "30.00"))
            bob.wait_for(f"NEW_BID  lot {lot_id}  30.00 USD  by Bidder 1")
            assert bob.process.poll() is None, bob.report()
            assert bob.finish() == 0


HOUR = timedelta(hours=1)


def with_fresh_token(base_url: str, username: str, request):
    """`request(token)` with a token just obtained, again with a new one while a 401 says it expired on the way."""
    deadline = time.monotonic() + GENEROUS
    while True:
        login = http("POST", f"{base_url}/api/auth/token/", json_body={"username": username, "password": PASSWORD})
        assert login.status == 200, login.body
        try:
            return request(login.json()["access"])
        except TokenRefused:
            assert time.monotonic() < deadline, "no token lived long enough for one request"


def place_bid(base_url: str, token: str, lot_id: int, amount: str) -> None:
    reply = http(
        "POST",
        f"{base_url}/api/lots/{lot_id}/bids/",
        json_body={"amount": amount},
        headers={"Authorization": f"Bearer {token}"},
    )
    if reply.status == 401:
        raise TokenRefused(reply.body)
    assert reply.status == 201, reply.body


@pytest.mark.django_db(transaction=True)
def test_ctrl_c_ends_the_client_in_one_line(tmp_path, server):
    seller = register_and_log_in(server.url, "cli_seller")
    lot_id = create_lot(server.url, seller, ends_in=timedelta(hours=1))
    with client(tmp_path, str(lot_id), "--url", server.url) as watcher:
        watcher.wait_for(f"LOT_STATUS  lot {lot_id}")
        watcher.process.send_signal(signal.SIGINT)
        assert watcher.process.wait(GENEROUS) == 130
        stderr = watcher.stderr()
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "CommandError: interrupted"
