"""Liveness (`/api/health/`): the database and the real-time fan-out's Redis (`channel_layer`) answer.

Readiness (`/api/ready/`): they answer and every migration is applied; a
load balancer or orchestrator sends traffic only to a ready process.
"""

import logging

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ops import broadcasting

logger = logging.getLogger(__name__)


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("health: database check failed", exc_info=True)
        return False


def channel_layer_ok() -> bool:
    """The real-time fan-out's Redis answers (always, on the embedded default): the path every broadcast takes."""
    try:
        broadcasting.check_reachable()
        return True
    except Exception:
        logger.warning("health: the fan-out's Redis check failed", exc_info=True)
        return False


FAILURES = {
    "database": ("database_unavailable", "The database does not answer."),
    "channel_layer": ("channel_layer_unavailable", "The real-time fan-out's Redis does not answer."),
    "migrations": ("migrations_pending", "The database schema is not migrated yet."),
}


def verdict(checks: dict[str, bool], *, ok_status: str) -> tuple[dict, int]:
    """200 when every check passed, else 503 with the `code` of the first that failed."""
    failed = next((name for name, passed in checks.items() if not passed), None)
    if failed is None:
        return {"status": ok_status, **checks}, 200
    code, detail = FAILURES[failed]
    return {"code": code, "detail": detail, "status": "unavailable", **checks}, 503


def liveness() -> tuple[dict, int]:
    return verdict({"database": database_ok(), "channel_layer": channel_layer_ok()}, ok_status="ok")


_migrations_applied = False


def migrations_applied() -> bool:
    """No migration is waiting; once true, it stays true for the life of the process."""
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrations_applied


def readiness() -> tuple[dict, int]:
    checks = {"database": database_ok(), "channel_layer": channel_layer_ok(), "migrations": False}
    if checks["database"]:
        try:
            checks["migrations"] = migrations_applied()
        except Exception:
            logger.warning("ready: migration check failed", exc_info=True)
    return verdict(checks, ok_status="ready")


def probe_schema(name: str, checks: list[str]):
    fields = {"status": serializers.CharField(), **{check: serializers.BooleanField() for check in checks}}
    return extend_schema(responses={(200, "application/json"): inline_serializer(name, fields)})


class ProbeApi(APIView):
    """A probe for orchestrators: no authentication, JSON only, 503 with a `code` when not fit."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    renderer_classes = [JSONRenderer]
    probe = staticmethod(liveness)

    def get(self, request: Request) -> Response:
        body, status = self.probe()
        return Response(body, status=status, headers={"Retry-After": "5"} if status == 503 else None)


@probe_schema("Health", ["database", "channel_layer"])
class HealthApi(ProbeApi):
    """Liveness: the database and the fan-out's Redis answer."""


@probe_schema("Ready", ["database", "channel_layer", "migrations"])
class ReadyApi(ProbeApi):
    """Readiness: live, and the schema is migrated."""

    probe = staticmethod(readiness)
