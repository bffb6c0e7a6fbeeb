"""What the seller's page reads from the API: what a new lot takes (OPTIONS), and the seller's own lots."""

import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from lots.models import Lot, LotStatus

pytestmark = pytest.mark.django_db


def test_options_describe_a_new_lot_with_the_currencies_and_the_server_s_default(seller, client_for, settings):
    settings.AUCTION_DEFAULT_CURRENCY = "EUR"

    post = client_for(seller).options("/api/lots/").json()["actions"]["POST"]

    currency = post["currency"]
    assert (currency["default"], currency["required"]) == ("EUR", False)
    assert {"USD", "EUR", "JPY"} <= {choice["value"] for choice in currency["choices"]}
    assert post["draft"]["default"] is False
    assert post["image"]["type"] == "image upload"
    assert post["title"]["required"] is True
    # The fields a seller sets, never the lot's state.
    assert "status" not in post and "bid_count" not in post


def test_a_lot_that_names_no_currency_takes_the_server_s_default_read_at_the_request(seller, client_for, settings):
    settings.AUCTION_DEFAULT_CURRENCY = "GBP"
    ends_at = (timezone.now() + timedelta(hours=1)).isoformat()

    response = client_for(seller).post("/api/lots/", {"title": "Teapot", "starting_price": "5", "ends_at": ends_at})

    assert response.status_code == 201, response.content
    assert response.json()["currency"] == Lot.objects.get().currency == "GBP"


def test_options_offer_a_visitor_no_form(api_client):
    assert "actions" not in api_client.options("/api/lots/").json()


def test_a_seller_lists_their_own_lots_drafts_included_newest_first(make_lot, make_user, seller, client_for):
    other = make_user("olga")
    draft = make_lot(draft=True, title="Draft clock")
    scheduled = make_lot(title="Later vase", starts_at=timezone.now() + timedelta(minutes=30))
    make_lot(seller=other, title="Not mine")
    make_lot(seller=other, title="Their draft", draft=True)

    mine = client_for(seller).get("/api/lots/", {"seller": seller.username, "ordering": "-created_at"}).json()
    theirs = client_for(seller).get("/api/lots/", {"seller": other.username}).json()

    assert [(lot["id"], lot["status"]) for lot in mine["results"]] == [
        (scheduled.pk, LotStatus.SCHEDULED),
        (draft.pk, LotStatus.DRAFT),
    ]
    assert [lot["title"] for lot in theirs["results"]] == ["Not mine"]


@pytest.mark.parametrize("field", ["starts_at", "hard_ends_at"])
def test_an_edit_that_empties_a_time_is_refused_by_its_field(make_lot, seller, client_for, field):
    lot = make_lot(draft=True)

    response = client_for(seller).patch(f"/api/lots/{lot.pk}/", {field: None}, format="json")

    assert response.status_code == 400, response.content
    assert (response.json()["code"], list(response.json()["errors"])) == ("null", [field])
    assert getattr(Lot.objects.get(pk=lot.pk), field) == getattr(lot, field)


def test_a_photo_over_the_size_limit_is_refused_by_its_field_and_no_lot_is_made(seller, client_for, settings):
    settings.LOT_IMAGE_MAX_BYTES = 10_000
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 100).convert("RGB").save(buffer, "PNG")
    assert buffer.tell() > 10_000
    photo = SimpleUploadedFile("photo.png", buffer.getvalue(), content_type="image/png")
    ends_at = (timezone.now() + timedelta(hours=1)).isoformat()

    response = client_for(seller).post(
        "/api/lots/", {"title": "Teapot", "starting_price": "5", "ends_at": ends_at, "image": photo}, format="multipart"
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "image_too_large"
    assert list(response.json()["errors"]) == ["image"]
    assert not Lot.objects.exists()
