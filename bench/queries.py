"""Queries per request of the benchmarked paths, on the benchmark's database: `python -m bench.queries PATH`;
statements per accepted bid: `python -m bench.queries --bids LOT_ID USER_ID USER_ID`.

Run as a subprocess with the benchmark's environment (like `bench.seed`); prints JSON.
"""

import json
import os
import sys

import django

BIDS_COUNTED = 40


def statements_per_bid(lot_id: int, user_ids: list[int]) -> dict:
    """Bids on `lot_id` by two users in turn, each at the minimum: statements per accepted bid, BEGIN and COMMIT
    included (Django logs them on PostgreSQL)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bids.services import place_bid
    from lots.events import lot_min_next_bid
    from lots.models import Lot

    users = [get_user_model().objects.get(pk=user_id) for user_id in user_ids]
    lot = Lot.objects.get(pk=lot_id)
    if lot.high_bidder_id == users[0].pk:
        users.reverse()  # A leader's bid at the minimum would only raise their maximum.
    amount = lot_min_next_bid(lot)
    accepted = 0
    with CaptureQueriesContext(connection) as captured:
        for turn in range(BIDS_COUNTED):
            outcome = place_bid(lot_id=lot_id, bidder=users[turn % 2], amount=str(amount))
            amount, accepted = outcome.lot_state["min_next_bid"], accepted + 1
    return {"accepted": accepted, "statements_per_bid": len(captured.captured_queries) / accepted}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auction_site.settings")
    django.setup()
    if sys.argv[1] == "--bids":
        print(json.dumps(statements_per_bid(int(sys.argv[2]), [int(user_id) for user_id in sys.argv[3:5]])))
        return
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    counts = {}
    for path in sys.argv[1:]:
        client.get(path)  # Warm: the first request may load what later ones reuse.
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        counts[path] = {"status": status, "queries": len(captured.captured_queries)}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
