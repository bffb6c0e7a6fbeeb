"""Liveness: the database and the channel layer answer."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
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

    @extend_schema(
        responses={
            (200, "application/json"): inline_serializer(
                "Health", {"status": serializers.CharField(), "database": serializers.BooleanField(),
                           "channel_layer": serializers.BooleanField()}
            )
        }
    )
    def get(self, request: Request) -> Response:
        checks = {"database": database_ok(), "channel_layer": channel_layer_ok()}
        healthy = all(checks.values())
        return Response({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)
