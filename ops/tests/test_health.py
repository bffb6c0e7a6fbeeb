"""GET /api/health/: 200 when the database and the fan-out's Redis (`channel_layer`) answer, 503 otherwise."""

import pytest
from django.conf import settings

from conftest import ON_SERVICES
from realtime import fanout

HEALTH = "/api/health/"


@pytest.mark.django_db
def test_healthy(api_client):
    response = api_client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "channel_layer": True}


@pytest.mark.django_db
def test_healthy_twice(api_client):
    # The check reuses one client for request threads: a second request must find it working.
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
def test_unavailable_without_the_fanouts_redis(api_client, redis_unreachable):
    # A real Redis client pointed at a port where nothing listens.
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
    assert settings.REDIS_URL

    for _ in range(2):
        response = api_client.get(HEALTH)
        assert response.status_code == 200
        assert response.json()["channel_layer"] is True
    # The check went to Redis on the client broadcasts take, and it answers.
    assert fanout._redis_for_threads().ping()
