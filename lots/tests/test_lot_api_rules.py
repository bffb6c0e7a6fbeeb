"""REST rules found by an outside attacker (issue 15): hidden drafts, moving lots between sales,
shortening a lot after bids, ended lots in lists, and the one money format."""

import pytest

from bids.models import ChatMessage
from lots.models import Lot, LotStatus, Watch

pytestmark = pytest.mark.django_db


# --- 4. A draft is seen only by its seller and staff -----------------------------

# Every path that names a lot: (method, path under /api/lots/<id>/, body).
LOT_PATHS = [
    ("get", "", None),
    ("patch", "", {"title": "Mine now"}),
    ("delete", "", None),
    ("post", "open/", None),
    ("post", "close/", None),
    ("post", "cancel/", None),
    ("post", "watch/", None),
    ("delete", "watch/", None),
    ("get", "bids/", None),
    ("post", "bids/", {"amount": "20.00"}),
    ("post", "buy-now/", None),
    ("get", "chat/", None),
    ("post", "chat/", {"text": "hello"}),
    ("post", "chat/1/hide/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), LOT_PATHS, ids=[f"{m} {p or 'detail'}" for m, p, _ in LOT_PATHS])
def test_someone_elses_draft_is_not_found_on_every_path(make_lot, bidder, client_for, method, path, body):
    draft = make_lot(draft=True, buy_now_price="50.00")

    response = getattr(client_for(bidder), method)(f"/api/lots/{draft.pk}/{path}", body, format="json")

    assert response.status_code == 404, response.content
    assert response.json()["code"] == "lot_not_found"
    untouched = Lot.objects.get(pk=draft.pk)
    assert (untouched.status, untouched.title, untouched.bid_count) == (LotStatus.DRAFT, draft.title, 0)
    assert not Watch.objects.exists()
    assert not ChatMessage.objects.exists()


def test_an_unknown_lot_answers_the_same(bidder, client_for):
    """The draft's answers above are exactly those for a lot that does not exist."""
    for method, path, body in LOT_PATHS:
        response = getattr(client_for(bidder), method)(f"/api/lots/424242/{path}", body, format="json")
        assert (response.status_code, response.json()["code"]) == (404, "lot_not_found"), (method, path)


def test_anonymous_reads_of_a_draft_are_not_found(make_lot, api_client):
    draft = make_lot(draft=True)

    for path in ("", "bids/", "chat/"):
        response = api_client.get(f"/api/lots/{draft.pk}/{path}")
        assert (response.status_code, response.json()["code"]) == (404, "lot_not_found")


def test_watchlist_never_shows_someone_elses_draft(make_lot, bidder, client_for):
    draft = make_lot(draft=True, title="Secret vase")
    public = make_lot(title="Public lamp")
    Watch.objects.create(user=bidder, lot=draft)  # e.g. watched before the check existed
    client = client_for(bidder)
    client.post(f"/api/lots/{public.pk}/watch/")

    titles = [lot["title"] for lot in client.get("/api/users/me/watchlist/").json()["results"]]

    assert titles == ["Public lamp"]


@pytest.mark.parametrize("who", ["seller", "staff_user"])
def test_seller_and_staff_see_and_watch_the_draft(make_lot, client_for, request, who):
    draft = make_lot(draft=True)
    client = client_for(request.getfixturevalue(who))

    assert client.get(f"/api/lots/{draft.pk}/").json()["status"] == "draft"
    assert client.post(f"/api/lots/{draft.pk}/watch/").status_code == 201
    assert client.patch(f"/api/lots/{draft.pk}/", {"title": "Renamed"}, format="json").status_code == 200
