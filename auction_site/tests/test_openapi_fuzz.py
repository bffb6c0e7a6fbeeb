"""Hostile HTTP input: Schemathesis fuzzes every operation of the API's own OpenAPI schema.

The schema is loaded in process from `/api/schema/` (the WSGI application:
the same URLconf, middleware and views `manage.py serve` runs) and every
operation is called with generated input, valid and invalid, as a bidder
and anonymously, and the sale and lot management ones as staff. Path ids
are either generated (mostly missing objects) or those of seeded objects:
an open lot, a sale, a registration, a chat message. Every answer must be a non-5xx that the schema documents: its
status code, its content type and its body (errors included:
`{code, detail[, errors]}`, see `ops/openapi.py`).

Schemathesis's phases: `examples`, `coverage` (deterministic boundary and
type-violating values for every parameter and field: most of the cases) and
`fuzzing` (Hypothesis, `EXAMPLES_PER_OPERATION` per operation). In the
everyday suite the anonymous client skips the coverage phase: without
credentials nearly every write stops at 401 before its input is read.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import access_token_for
from testsupport.reliability import FULL, size

# Not `negative_data_rejection`: DRF reads an empty `?page=` as page 1 and a
# form field `0`/`1` as a boolean, both spellings the check calls invalid.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = size(10, 200)
HYPOTHESIS_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


# Ids of the seeded objects, set by the `seeded` fixture: the database assigns them.
SEEDED: dict[str, object] = {}


def aim_at_seeded_objects(context, path_parameters):
    """Half the cases aim at seeded objects; the others keep the generated (mostly missing) ids."""
    if not path_parameters:
        return st.just(path_parameters)
    real = {**path_parameters, **{name: SEEDED[name] for name in path_parameters if name in SEEDED}}
    return st.sampled_from([path_parameters, real])


def load_schema(*, coverage: bool):
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/",
        get_wsgi_application(),
        config=schemathesis.Config.from_dict(
            {
                # The same cases on every run, and nothing remembered between runs.
                "seed": 8,
                "generation": {"max-examples": EXAMPLES_PER_OPERATION, "database": "none"},
                "phases": {"coverage": {"enabled": coverage}},
            }
        ),
    )
    schema.hook("flatmap_path_parameters")(aim_at_seeded_objects)
    return schema


user_schema = load_schema(coverage=True)
anonymous_schema = load_schema(coverage=FULL)
# Staff differ from a bidder on the sales (create, stagger, participants) and on managing
# others' lots; the full run sends them everywhere.
STAFF_PATHS = r"^/api/auctions/|^/api/lots/\{lot_id\}/((open|close|cancel|chat/\{message_id\}/hide)/)?$"
staff_schema = user_schema if FULL else user_schema.include(path_regex=STAFF_PATHS)


@pytest.fixture
def seeded(make_lot, bidder, other_bidder, staff_user):
    from bids.services import post_chat_message
    from lots.models import Auction
    from lots.services import register_for_auction

    sale = Auction.objects.create(title="Spring sale", slug="spring-sale", requires_registration=True)
    lot = make_lot(auction=sale, starting_price=Decimal("10.00"), buy_now_price=Decimal("500.00"))
    make_lot(title="Draft lamp", draft=True, ends_at=timezone.now() + timedelta(days=1))
    registration = register_for_auction(auction_id=sale.pk, user=bidder)
    message = post_chat_message(lot_id=lot.pk, author=other_bidder, text="Lovely lamp")
    SEEDED.update(lot_id=lot.pk, slug=sale.slug, registration_id=registration.pk, message_id=message.pk)
    yield {"bidder": bidder, "staff": staff_user}
    SEEDED.clear()


@pytest.fixture
def generous_limits(settings):
    """Fuzzing sends thousands of requests a minute; the production limits would answer 429 to most."""
    settings.THROTTLE_AUTH = settings.THROTTLE_LOGIN_ACCOUNT = settings.THROTTLE_PASSWORD_RESET = "100000/minute"
    settings.CHAT_MESSAGES_PER_MINUTE = 100_000


def call_as(user, case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {access_token_for(user)}"}, checks=CHECKS)


@pytest.fixture
def connection_kept_across_requests():
    """What Django's test client does: the test's transaction (and seeded rows) must outlive each request.

    Otherwise every request's end hands the connection back to psycopg's pool
    in the middle of the test's atomic block.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_under_fuzz(seeded, generous_limits, connection_kept_across_requests):
    return seeded


@pytest.mark.reliability
@pytest.mark.django_db
@user_schema.parametrize()
@HYPOTHESIS_SETTINGS
def test_every_operation_answers_a_bidder_as_documented(case, api_under_fuzz):
    call_as(api_under_fuzz["bidder"], case)


@pytest.mark.reliability
@pytest.mark.django_db
@staff_schema.parametrize()
@HYPOTHESIS_SETTINGS
def test_sale_and_lot_management_answer_staff_as_documented(case, api_under_fuzz):
    call_as(api_under_fuzz["staff"], case)


@pytest.mark.reliability
@pytest.mark.django_db
@anonymous_schema.parametrize()
@HYPOTHESIS_SETTINGS
def test_every_operation_answers_anonymous_clients_as_documented(case, api_under_fuzz):
    case.call_and_validate(checks=CHECKS)


# --- Defects the fuzzer found, pinned ------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/lots/abc/", "/api/auctions/a%20b/register/", "/api/nowhere/"])
def test_an_unknown_api_url_answers_json_404_with_a_code(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"code": "not_found", "detail": "No such endpoint."}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path",
    [
        ("delete", f"/api/lots/{2**64}/watch/"),
        ("post", f"/api/lots/{2**64}/chat/1/hide/"),
        ("get", f"/api/lots/{10**18}/"),
        ("post", f"/api/auctions/spring-sale/participants/{2**63}/approve/"),
    ],
)
def test_an_id_past_any_row_answers_404_not_500(client_for, staff_user, method, path):
    # On SQLite these foreign key lookups raised OverflowError.
    response = getattr(client_for(staff_user), method)(path)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_a_sale_ending_when_it_starts_is_refused_with_invalid_schedule(client_for, staff_user):
    starts_at = "2030-01-01T10:00:00Z"
    client = client_for(staff_user)

    created = client.post(
        "/api/auctions/", {"title": "Sale", "slug": "sale", "starts_at": starts_at, "ends_at": starts_at}, format="json"
    )
    valid = client.post("/api/auctions/", {"title": "Sale", "slug": "sale", "starts_at": starts_at}, format="json")
    patched = client.patch("/api/auctions/sale/", {"ends_at": "2029-12-31T10:00:00Z"}, format="json")

    assert created.status_code == 400
    assert created.json()["code"] == "invalid_schedule"
    assert valid.status_code == 201
    assert valid.json()["lot_count"] == 0
    assert patched.status_code == 400
    assert patched.json()["code"] == "invalid_schedule"


@pytest.mark.django_db
def test_sales_are_listed_newest_first(api_client):
    from lots.models import Auction

    for slug in ("first", "second", "third"):
        Auction.objects.create(title=slug, slug=slug)

    response = api_client.get("/api/auctions/")

    assert [sale["slug"] for sale in response.json()["results"]] == ["third", "second", "first"]


@pytest.mark.django_db
def test_the_schema_documents_error_bodies_and_a_lot_without_a_sale(api_client):
    schema = api_client.get("/api/schema/?format=json").json()

    bid_responses = schema["paths"]["/api/lots/{lot_id}/bids/"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "503"} <= set(bid_responses)
    assert bid_responses["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "429" in schema["paths"]["/api/lots/{lot_id}/chat/"]["post"]["responses"]  # `rate_limited`
    assert schema["components"]["schemas"]["Lot"]["properties"]["auction"]["nullable"] is True
