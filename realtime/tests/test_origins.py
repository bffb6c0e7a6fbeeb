"""The origin check's log of refused handshakes: one line per reason a minute, whatever the flood."""

import logging

import pytest
from channels.testing import WebsocketCommunicator

from ops.metrics import WEBSOCKETS_REFUSED
from realtime.origins import LOG_INTERVAL_SECONDS, OriginCheck, RefusalLog

# Channels' denier, a consumer, tidies database connections before it closes.
pytestmark = pytest.mark.django_db(transaction=True)


async def never_reached(scope, receive, send):
    raise AssertionError("a refused handshake reached the application")


def refusal_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "websocket.origin_refused"]


async def handshake(check: OriginCheck, origin: bytes | None) -> bool:
    headers = [] if origin is None else [(b"origin", origin)]
    socket = WebsocketCommunicator(check, "/ws/lots/7/", headers=headers)
    connected, _ = await socket.connect()
    await socket.disconnect()
    return connected


async def test_a_flood_of_refusals_is_one_line_per_reason_then_a_count(caplog):
    clock = [1000.0]
    check = OriginCheck(never_reached, ["localhost"], RefusalLog(clock=lambda: clock[0]))
    counted_before = WEBSOCKETS_REFUSED.labels("no_origin")._value.get()
    caplog.set_level(logging.WARNING, logger="realtime.origins")

    for _ in range(50):
        assert not await handshake(check, None)
    assert not await handshake(check, b"http://evil.example")
    clock[0] += LOG_INTERVAL_SECONDS
    assert not await handshake(check, None)

    lines = refusal_lines(caplog)
    assert [(r.levelname, r.reason, r.unlogged) for r in lines] == [
        ("WARNING", "no_origin", 0),
        ("WARNING", "origin_not_allowed", 0),
        ("WARNING", "no_origin", 49),
    ]
    assert lines[0].getMessage() == (
        "refused a websocket handshake to /ws/lots/7/: "
        "no Origin header (send one naming this site or a front end in WEBSOCKET_ALLOWED_ORIGINS)"
    )
    assert lines[2].getMessage().endswith("; 49 more refused for this reason since the last line")
    assert WEBSOCKETS_REFUSED.labels("no_origin")._value.get() - counted_before == 51


@pytest.mark.parametrize("origin", [b"http://[::1", b"http://other.example:99999", b"\xff\xfe"])
async def test_an_unparsable_origin_is_refused_not_a_crash(origin, caplog):
    check = OriginCheck(never_reached, ["localhost", "http://front.example:3000"], RefusalLog())
    caplog.set_level(logging.WARNING, logger="realtime.origins")

    assert not await handshake(check, origin)

    assert [r.reason for r in refusal_lines(caplog)] == ["origin_not_allowed"]


async def test_an_allowed_origin_passes_and_logs_nothing(caplog):
    reached = []

    async def application(scope, receive, send):
        reached.append(scope["path"])
        await receive()
        await send({"type": "websocket.accept"})

    check = OriginCheck(application, ["localhost"], RefusalLog())
    caplog.set_level(logging.WARNING, logger="realtime.origins")

    assert await handshake(check, b"http://localhost:8000")

    assert reached == ["/ws/lots/7/"]
    assert refusal_lines(caplog) == []
