"""GET /api/health/: 200 when the database and the channel layer answer, 503 otherwise."""

import pytest
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from conftest import ON_SERVICES

HEALTH = "/api/health/"


@pytest.mark.django_db
def test_healthy(api_client):
    response = api_client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "channel_layer": True}


@pytest.mark.django_db
def test_healthy_twice(api_client):
    # A sync view runs each check in new event loops; a layer that keeps per-loop state must survive that.
    assert api_client.get(HEALTH).status_code == 200
    assert api_client.get(HEALTH).status_code == 200


def test_unavailable_without_the_database(api_client):
    # No django_db mark: pytest-django refuses every query, as an unreachable server would.
    response = api_client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert (body["code"], body["status"], body["database"], body["channel_layer"]) == (
        "database_unavailable",
        "unavailable",
        False,
        True,
    )


@pytest.mark.django_db
def test_unavailable_without_the_channel_layer(api_client, settings):
    # A real Redis client pointed at a port where nothing listens.
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }

    response = api_client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert (body["code"], body["status"], body["database"], body["channel_layer"]) == (
        "channel_layer_unavailable",
        "unavailable",
        True,
        False,
    )


@pytest.mark.services
@pytest.mark.django_db
def test_healthy_on_postgresql_and_redis(api_client):
    assert ON_SERVICES
    assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    assert isinstance(get_channel_layer(), RedisChannelLayer)

    for _ in range(2):
        response = api_client.get(HEALTH)
        assert response.status_code == 200
        assert response.json()["channel_layer"] is True
