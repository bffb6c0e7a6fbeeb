"""A real server and Debian's Chromium, for the browser tests of the pages.

Black-box: `manage.py serve` (daphne and the in-process auction clock) runs
as a subprocess on its own fresh SQLite file; users and lots are made through
the public REST API, as a third-party client would.
"""

import io
import itertools
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import APIRequestContext, Browser, Page, expect, sync_playwright

from testsupport.ports import free_port

BASE_DIR = Path(__file__).resolve().parent.parent
# `make screenshots` points this at docs/screenshots/.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or BASE_DIR / "test-artifacts" / "screenshots")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UNDER_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct-horse-battery-staple"
STAFF_USERNAME = "staff"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

# What must appear: generous enough for a machine at load 12 (only a failing test waits it out).
expect.set_options(timeout=30_000)


@dataclass
class AuctionServer:
    url: str
    log_path: Path
    # Where the server's e-mails land, a file per connection (Django's file backend).
    mail_dir: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_until_listening(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the server did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="package")
def auction_server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("live-server")
    env = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        SQLITE_PATH=str(workdir / "db.sqlite3"),
        MEDIA_ROOT=str(workdir / "media"),
        DEBUG="1",
        DJANGO_SETTINGS_MODULE="webtests.server_settings",
        # Every test registers and logs in from 127.0.0.1.
        THROTTLE_AUTH="1000/minute",
        THROTTLE_LOGIN_ACCOUNT="1000/minute",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        PYTHONUNBUFFERED="1",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(workdir / "mail"),
    )
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    run = {"env": env, "cwd": BASE_DIR, "check": True, "capture_output": True}
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], **run)
    # Staff run sales: the one account the public API cannot make.
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", STAFF_USERNAME, "--email", "staff@example.com"], **run
    )
    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*manage, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_listening(port, process, log_path)
        yield AuctionServer(url=f"http://127.0.0.1:{port}", log_path=log_path, mail_dir=workdir / "mail")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test shows the end of the server's log."""
    report = yield
    server = getattr(item, "funcargs", {}).get("auction_server")
    if report.failed and server is not None:
        report.sections.append(("server log (last lines)", server.log_tail()))
    return report


@pytest.fixture(scope="package")
def playwright():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if UNDER_CI:
            pytest.fail(f"{reason}: browser tests must run under CI=true")
        pytest.skip(reason)
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="package")
def browser(playwright) -> Browser:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Api:
    """The public REST API, called from the test as another client would."""

    names = itertools.count(1)

    def __init__(self, http: APIRequestContext) -> None:
        self.http = http
        self.tokens: dict[str, str] = {}

    def call(self, method: str, path: str, *, user: str | None = None, data: dict | None = None, ok: bool = True):
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        # A file among the fields: send the form as multipart.
        multipart = data if data and any(isinstance(value, dict) for value in data.values()) else None
        response = self.http.fetch(
            path, method=method, data=None if multipart else data, multipart=multipart, headers=headers
        )
        if ok:
            assert response.ok, f"{method} {path}: {response.status} {response.text()}"
        return response.json() if response.status != 204 else None

    def register(self, prefix: str) -> str:
        username = f"{prefix}{next(self.names)}"
        self.call(
            "POST",
            "/api/auth/register/",
            data={
                "username": username,
                "email": f"{username}@example.com",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
            },
        )
        return username

    def token(self, username: str) -> str:
        if username not in self.tokens:
            tokens = self.call("POST", "/api/auth/token/", data={"username": username, "password": PASSWORD})
            self.tokens[username] = tokens["access"]
        return self.tokens[username]

    def create_lot(
        self, seller: str, *, ends_in: float = 600, starts_in: float | None = None, image: bytes | None = None, **fields
    ) -> dict:
        now = datetime.now(UTC)
        if image is not None:
            fields["image"] = {"name": "photo.png", "mimeType": "image/png", "buffer": image}
        fields.setdefault("title", "Art deco lamp")
        fields.setdefault("starting_price", "10.00")
        fields["ends_at"] = (now + timedelta(seconds=ends_in)).isoformat()
        if starts_in is not None:
            fields["starts_at"] = (now + timedelta(seconds=starts_in)).isoformat()
        return self.call("POST", "/api/lots/", user=seller, data=fields)

    def bid(self, bidder: str, lot_id: int, amount: str) -> dict:
        return self.call("POST", f"/api/lots/{lot_id}/bids/", user=bidder, data={"amount": amount})


@pytest.fixture(scope="package")
def api(playwright, auction_server) -> Api:
    http = playwright.request.new_context(base_url=auction_server.url)
    yield Api(http)
    http.dispose()


def log_in(page: Page, username: str) -> None:
    """Log in through the cookie endpoints, sharing the page's cookies."""
    csrf = page.request.get("/api/auth/csrf/").json()["csrf_token"]
    response = page.request.post(
        "/api/auth/cookie/login/", data={"username": username, "password": PASSWORD}, headers={"X-CSRFToken": csrf}
    )
    assert response.ok, response.text()


@pytest.fixture
def open_page(browser, auction_server):
    """Opens `path` in a fresh browser context (in `locale`), logged in as `user` if given.

    Fails the test on any uncaught error in the page's scripts.
    """
    contexts, errors = [], []

    def open_page(
        path: str | None, *, user: str | None = None, viewport: dict = DESKTOP, locale: str = "en-US"
    ) -> Page:
        context = browser.new_context(base_url=auction_server.url, viewport=viewport, locale=locale, timezone_id="UTC")
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        if user:
            log_in(page, user)
        if path:
            page.goto(path)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


def png(width: int = 400, height: int = 300) -> bytes:
    """A small photo stand-in: a warm gradient."""
    image = Image.new("RGB", (width, height))
    image.putdata([(180 + x * 60 // width, 120 + y * 80 // height, 60) for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def place_bid(page: Page, amount: str, maximum: str = "") -> None:
    page.get_by_label("Your bid").fill(amount)
    page.get_by_label("Maximum bid").fill(maximum)
    page.get_by_role("button", name="Place bid").click()
