"""Requests an outside attacker turned into 500s (issue 15, item 11): each is now a 4xx with a `code`.

Deeply nested JSON on every kind of JSON endpoint, numbers and dates past what
the columns and `datetime` hold, and races (the same e-mail address claimed by
20 accounts at once; one user watching and unwatching a lot at once) run for
real with threads against PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from conftest import PASSWORD, access_token_for
from lots.models import Auction, Lot, Watch
from testsupport.bidding import run_threads

User = get_user_model()
NESTED = "[" * 1000 + "]" * 1000
DEEPER = '{"a":' * 100_000 + "1" + "}" * 100_000


def bearer(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


def assert_refused(response, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.content


@pytest.mark.django_db
@pytest.mark.parametrize("body", [NESTED, DEEPER], ids=["1000-deep", "100000-deep"])
def test_json_nested_too_deep_is_a_parse_error_everywhere(body, make_lot, bidder, staff_user):
    lot = make_lot()
    anonymous, user, staff = APIClient(), bearer(bidder), bearer(staff_user)
    calls = [
        (anonymous, "POST", "/api/auth/register/"),
        (anonymous, "POST", "/api/auth/token/"),
        (anonymous, "POST", "/api/auth/token/refresh/"),
        (anonymous, "POST", "/api/auth/password-reset/"),
        (user, "PATCH", "/api/users/me/"),
        (user, "POST", "/api/lots/"),
        (user, "PATCH", f"/api/lots/{lot.pk}/"),
        (user, "POST", f"/api/lots/{lot.pk}/bids/"),
        (user, "POST", f"/api/lots/{lot.pk}/chat/"),
        (staff, "POST", "/api/auctions/"),
    ]

    for client, method, path in calls:
        response = client.generic(method, path, body, content_type="application/json")
        assert_refused(response, 400, "parse_error")


@pytest.mark.django_db
@pytest.mark.parametrize("number", [2**31, 2**63, 10**30])
def test_a_lot_number_past_the_column_is_refused(number, bidder, make_lot):
    client = bearer(bidder)
    ends_at = (timezone.now() + timedelta(hours=1)).isoformat()
    lot = make_lot(seller=bidder)

    created = client.post(
        "/api/lots/",
        {"title": "Globe", "starting_price": "5.00", "ends_at": ends_at, "lot_number": number},
        format="json",
    )
    edited = client.patch(f"/api/lots/{lot.pk}/", {"lot_number": number}, format="json")
    largest = client.post(
        "/api/lots/",
        {"title": "Globe", "starting_price": "5.00", "ends_at": ends_at, "lot_number": 2**31 - 1},
        format="json",
    )

    assert_refused(created, 400, "max_value")
    assert_refused(edited, 400, "max_value")
    assert largest.status_code == 201, largest.content
    assert Lot.objects.get(pk=lot.pk).lot_number is None


@pytest.mark.django_db
def test_an_end_whose_default_hard_end_passes_year_9999_is_an_invalid_schedule(bidder, make_lot, staff_user):
    client = bearer(bidder)
    lot = make_lot(seller=bidder)
    end = "9999-12-31T23:30:00Z"

    created = client.post("/api/lots/", {"title": "Sextant", "starting_price": "5.00", "ends_at": end}, format="json")
    edited = client.patch(f"/api/lots/{lot.pk}/", {"ends_at": end}, format="json")
    with_its_own_hard_end = client.post(
        "/api/lots/",
        {"title": "Sextant", "starting_price": "5.00", "ends_at": end, "hard_ends_at": "9999-12-31T23:59:00Z"},
        format="json",
    )
    sale = bearer(staff_user).post("/api/auctions/", {"title": "Far future", "slug": "far-future"}, format="json")
    assert sale.status_code == 201, sale.content
    make_lot(seller=staff_user, auction=Auction.objects.get(slug="far-future"))
    make_lot(seller=staff_user, auction=Auction.objects.get(slug="far-future"))
    staggered = bearer(staff_user).post(
        "/api/auctions/far-future/stagger/",
        {"first_ends_at": "9999-12-31T23:59:00Z", "interval_seconds": 3600},
        format="json",
    )

    assert_refused(created, 400, "invalid_schedule")
    assert_refused(edited, 400, "invalid_schedule")
    assert with_its_own_hard_end.status_code == 201, with_its_own_hard_end.content
    assert_refused(staggered, 400, "invalid_schedule")
    assert Lot.objects.get(pk=lot.pk).ends_at.year < 9999


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_twenty_accounts_claiming_one_email_at_once_get_one_success_and_email_taken(make_user):
    users = [make_user(f"claimant{n}") for n in range(20)]
    clients = [bearer(user) for user in users]

    def claim(client):
        return client.patch(
            "/api/users/me/", {"email": "Wanted@Example.com", "current_password": PASSWORD}, format="json"
        )

    answers = run_threads(claim, [(client,) for client in clients])

    statuses = sorted(a.status_code if not isinstance(a, Exception) else repr(a) for a in answers)
    assert statuses == [200] + [400] * 19
    assert {a.json()["code"] for a in answers if a.status_code == 400} == {"email_taken"}
    assert User.objects.filter(email__iexact="wanted@example.com").count() == 1


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_one_user_watching_and_unwatching_at_once_never_gets_a_500(make_lot, bidder):
    lot = make_lot()
    path = f"/api/lots/{lot.pk}/watch/"
    rounds = 15

    def toggle(method: str):
        client = bearer(bidder)
        return client.post(path) if method == "POST" else client.delete(path)

    answers = []
    for _ in range(rounds):
        answers += run_threads(toggle, [("POST",)] * 6 + [("DELETE",)] * 6)
    last = run_threads(toggle, [("POST",)] * 8)

    unexpected = [a if isinstance(a, Exception) else (a.status_code, a.content) for a in answers + last]
    assert [a for a in unexpected if isinstance(a, Exception) or a[0] not in (201, 204)] == []
    assert Watch.objects.filter(user=bidder, lot=lot).count() == 1  # Watched once, after the last POSTs.
