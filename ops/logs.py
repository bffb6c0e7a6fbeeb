"""Structured logs: one JSON object a line, with the request id, and never a credential.

`JsonFormatter` renders every record (Django's, daphne's, ours) as JSON;
`RequestIdFilter` stamps each record with the id of the request being
served. `access_log` replaces daphne's access logger, whose HTTP lines carry
the full URI and so any `?token=` or `?ticket=`. Every string is scrubbed
before it is written: query strings, bearer tokens and JWTs never reach a log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import traceback
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")
_CREDENTIAL_PARAM = re.compile(r"(?i)\b(token|ticket|access|refresh|password|secret|key)=[^&\s\"']+")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_LOT_PATH = re.compile(r"^/(?:ws|api)/lots/(\d+)/")

# Attributes every LogRecord has; anything else came in `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    """Drop query strings, bearer tokens and JWTs from `text`."""
    text = _QUERY.sub(r"\1?[redacted]", text)
    text = _CREDENTIAL_PARAM.sub(r"\1=[redacted]", text)
    text = _BEARER.sub("Bearer [redacted]", text)
    return _JWT.sub("[redacted-jwt]", text)


def lot_id_from_path(path: str) -> int | None:
    match = _LOT_PATH.match(path)
    return int(match.group(1)) if match else None


def _plain(value: Any) -> Any:
    """A JSON-ready, scrubbed version of an `extra` value."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if hasattr(value, "method") and hasattr(value, "path") and hasattr(value, "META"):
        # Django passes the request to its own loggers; its repr has the query string.
        return {"method": value.method, "path": value.path}
    return scrub(str(value))


class RequestIdFilter(logging.Filter):
    """Stamp every record with the current request's id (or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class WarningWithoutTraceback(logging.Filter):
    """A client's fault, not the server's: one WARNING line, no traceback (Django logs a bad `Host` as an ERROR with one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "pid": record.process,
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = _plain(value)
        if record.exc_info:
            entry["exc"] = scrub("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """The development format: readable, and scrubbed all the same."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = None
        return scrub(super().format(record))


access_logger = logging.getLogger("auction_site.access")


def access_log(protocol: str, action: str, details: dict[str, Any]) -> None:
    """Daphne's action logger: WebSocket comings and goings, without query strings.

    HTTP requests are logged by `RequestLogMiddleware`, with their request id
    and duration; daphne's own lines would repeat them with the query string.
    """
    if protocol != "websocket":
        return
    path = str(details.get("path") or "").split("?", 1)[0]
    access_logger.info(
        "websocket %s %s",
        action,
        path,
        extra={
            "event": f"websocket.{action}",
            "path": path,
            "client": details.get("client"),
            "lot_id": lot_id_from_path(path),
        },
    )
