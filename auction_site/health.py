"""Liveness (`/api/health/`): the database and the channel layer answer.

Readiness (`/api/ready/`): they answer and every migration is applied; a
load balancer or orchestrator sends traffic only to a ready process.
"""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.warning("health: database check failed", exc_info=True)
        return False


CHANNEL_LAYER_TIMEOUT_SECONDS = 2


async def _round_trip(layer) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    await asyncio.wait_for(layer.receive(channel), timeout=CHANNEL_LAYER_TIMEOUT_SECONDS)


def channel_layer_ok() -> bool:
    try:
        # A round trip through the layer: the same path every broadcast takes.
        async_to_sync(_round_trip)(get_channel_layer())
        return True
    except Exception:
        logger.warning("health: channel layer check failed", exc_info=True)
        return False


class HealthApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    renderer_classes = [JSONRenderer]

    @extend_schema(
        responses={
            (200, "application/json"): inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "database": serializers.BooleanField(),
                    "channel_layer": serializers.BooleanField(),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        checks = {"database": database_ok(), "channel_layer": channel_layer_ok()}
        healthy = all(checks.values())
        return Response({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)


_migrations_applied = False


def migrations_applied() -> bool:
    """No migration is waiting; once true, it stays true for the life of the process."""
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        _migrations_applied = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrations_applied


def readiness() -> tuple[dict, int]:
    """The readiness body and status: 200, or 503 with the `code` of the first failed check."""
    checks = {"database": database_ok(), "channel_layer": channel_layer_ok(), "migrations": False}
    if checks["database"]:
        try:
            checks["migrations"] = migrations_applied()
        except Exception:
            logger.warning("ready: migration check failed", exc_info=True)
    if not checks["database"]:
        code, detail = "database_unavailable", "The database does not answer."
    elif not checks["channel_layer"]:
        code, detail = "channel_layer_unavailable", "The channel layer (Redis) does not answer."
    elif not checks["migrations"]:
        code, detail = "migrations_pending", "The database schema is not migrated yet."
    else:
        return {"status": "ready", **checks}, 200
    return {"code": code, "detail": detail, "status": "unavailable", **checks}, 503


class ReadyApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    renderer_classes = [JSONRenderer]

    @extend_schema(
        responses={
            (200, "application/json"): inline_serializer(
                "Ready",
                {
                    "status": serializers.CharField(),
                    "database": serializers.BooleanField(),
                    "channel_layer": serializers.BooleanField(),
                    "migrations": serializers.BooleanField(),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        body, status = readiness()
        return Response(body, status=status, headers={"Retry-After": "5"} if status == 503 else None)
