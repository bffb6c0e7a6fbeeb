"""Fixtures for the accounts tests; the users themselves come from the root conftest."""

import pytest
from rest_framework.test import APIClient

from conftest import PASSWORD


@pytest.fixture
def obtain_tokens(api_client):
    """Log in through POST /api/auth/token/ and return {"access", "refresh"}."""

    def obtain(username: str, password: str = PASSWORD) -> dict:
        response = api_client.post("/api/auth/token/", {"username": username, "password": password}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    return obtain


@pytest.fixture
def browser():
    """A client that, like a browser, is held to Django's CSRF checks."""
    return APIClient(enforce_csrf_checks=True)
