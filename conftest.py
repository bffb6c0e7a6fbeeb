"""Fixtures shared by every app's tests, and the rules of the two test legs.

The first leg runs on the embedded default (SQLite, in-memory layer); the
second on PostgreSQL + Redis. Tests marked `services` need the second leg;
under CI=true a skipped `services` or `browser` test there is a failure.
"""

import os
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

ON_SERVICES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql") and bool(settings.REDIS_URL)
UNDER_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct-horse-battery-staple"


def pytest_collection_modifyitems(config, items):
    if ON_SERVICES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL + Redis: runs in the second leg of `make test`")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


def _must_run_here(item) -> bool:
    """Under CI=true: browser tests in both legs, services tests in the PostgreSQL/Redis leg."""
    if item.get_closest_marker("browser"):
        return True
    return ON_SERVICES and item.get_closest_marker("services") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if UNDER_CI and report.skipped and not hasattr(report, "wasxfail") and _must_run_here(item):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where it must run: {report.longrepr}"
    return report


def pytest_sessionfinish(session, exitstatus):
    if UNDER_CI and ON_SERVICES and exitstatus == 0:
        ran = getattr(session.config, "_services_tests_run", 0)
        if ran == 0:
            session.exitstatus = 1
            print("\nCI=true: the PostgreSQL/Redis leg ran no `services` test.")


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and "services" in report.keywords:
        config = pytest_runtest_logreport.config
        config._services_tests_run = getattr(config, "_services_tests_run", 0) + 1


def pytest_configure(config):
    pytest_runtest_logreport.config = config


@pytest.fixture(scope="session", autouse=True)
def _close_database_connections(django_db_setup, django_db_blocker):
    # PostgreSQL refuses to drop the test database while connections to it are
    # open: the pool's, and those that helper threads (asgiref's executors)
    # still hold. They are closed here, before django_db_setup drops it.
    yield
    with django_db_blocker.unblock():
        connection = connections["default"]
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connection.close_pool()


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


# The fixtures below that change settings take `_clear_cache` first: it is then
# set up before `settings` and torn down after the test's settings are restored,
# so it never clears a cache a test pointed elsewhere (a dead Redis, say).


@pytest.fixture(autouse=True)
def _fast_password_hasher(_clear_cache, settings):
    # The production hasher spends ~0.2 s per hash by design; the tests hash hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _abuse_limits_off(_clear_cache, settings):
    # Races, storms and property tests send many bids as one user in one test;
    # the tests of the limits themselves (auction_site/tests/test_abuse_limits.py)
    # turn them back on.
    settings.BIDS_PER_MINUTE = 0
    settings.WS_CONNECTIONS_PER_IP = 0


@pytest.fixture
def redis_unreachable(_clear_cache, settings, monkeypatch):
    """The fan-out's Redis (`settings.REDIS_URL`) is a port where nothing listens, on either leg.

    `realtime.fanout` keeps one client for request threads, made on first use:
    it is made afresh for the dead address, and the real one is back afterwards.
    """
    from realtime import fanout

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    monkeypatch.setattr(fanout, "_sync_redis", None)
    return settings.REDIS_URL


# Seconds into its 60 s window at which the abuse limits' clock stands still in tests.
RATE_WINDOW_AT = 36.5


@pytest.fixture(autouse=True)
def rate_window(monkeypatch) -> float:
    """The abuse limits' clock (`ops.ratelimit`), pinned `RATE_WINDOW_AT` s into the current window.

    Their allowances count per fixed window of wall-clock time: with the real
    clock a test slowed down by a busy machine could straddle two windows and
    get twice its allowance. Pinned, every count lands in one window and the
    wait to its end is exact. Returns the pinned time. Server processes a test
    launches keep the real clock.
    """
    from ops import ratelimit

    now = time.time() // 60 * 60 + RATE_WINDOW_AT
    monkeypatch.setattr(ratelimit, "clock", lambda: now)
    return now


@pytest.fixture
def make_user(django_user_model):
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, *, password: str = PASSWORD, **fields):
        username = username or f"user{next(counter)}"
        fields.setdefault("email", f"{username}@example.com")
        return django_user_model.objects.create_user(username=username, password=password, **fields)

    return make


@pytest.fixture
def bidder(make_user):
    return make_user("alice")


@pytest.fixture
def other_bidder(make_user):
    return make_user("bob")


@pytest.fixture
def third_bidder(make_user):
    return make_user("carol")


@pytest.fixture
def seller(make_user):
    return make_user("sam_seller")


@pytest.fixture
def staff_user(make_user):
    return make_user("stella_staff", is_staff=True, is_superuser=True)


@pytest.fixture
def api_client():
    return APIClient()


def access_token_for(user) -> str:
    return str(RefreshToken.for_user(user).access_token)


@pytest.fixture
def client_for():
    """An API client that sends `user`'s JWT access token."""

    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
        return client

    return make


@pytest.fixture
def make_lot(seller):
    """Create lots through the service, open now and ending in an hour by default."""
    from lots.services import create_lot

    def make(**fields):
        fields.setdefault("seller", seller)
        fields.setdefault("title", "Art deco lamp")
        fields.setdefault("starting_price", Decimal("10.00"))
        fields.setdefault("ends_at", timezone.now() + timedelta(hours=1))
        return create_lot(**fields)

    return make


@pytest.fixture
def inbox():
    """Listen on the fan-out the services broadcast to."""
    from testsupport.bidding import Inbox

    listener = Inbox()
    yield listener
    listener.close()


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, which the test may kill, freeze and restart; killed at the end."""
    from testsupport.servers import PrivateRedis

    server = PrivateRedis()
    server.start()
    yield server
    server.kill()
