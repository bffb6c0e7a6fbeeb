"""Create the benchmark's users and lots in the database named by DATABASE_URL; print them as JSON.

Run as a subprocess (`python -m bench.seed USERS`) so Django is configured with the
benchmark's environment, not the caller's.
"""

import json
import os
import sys
from datetime import timedelta
from decimal import Decimal

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auction_site.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework_simplejwt.tokens import RefreshToken

    from lots.services import create_lot

    count = int(sys.argv[1])
    open_lots = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    user_model = get_user_model()
    seller = user_model.objects.create_user(username="bench_seller", email="seller@bench.invalid", password=None)
    users = user_model.objects.bulk_create(
        [user_model(username=f"bench{i}", email=f"bench{i}@bench.invalid", password="!") for i in range(count)]
    )
    ends_at = timezone.now() + timedelta(hours=6)

    def lot(title: str):
        return create_lot(
            seller=seller,
            title=title,
            starting_price=Decimal("1.00"),
            bid_increment=Decimal("0.01"),
            ends_at=ends_at,
            hard_ends_at=ends_at + timedelta(hours=1),
        )

    names = ["s1_ws", "s1_rest", "s2", "pgbench"]
    lots = {name: lot(f"bench {name}").id for name in names}
    open_lot_ids = [lot(f"open lot {i}").id for i in range(open_lots)]
    print(
        json.dumps(
            {
                "lots": lots,
                "open_lots": open_lot_ids,
                "user_ids": [u.id for u in users],
                "tokens": [str(RefreshToken.for_user(u).access_token) for u in users],
            }
        )
    )


if __name__ == "__main__":
    main()
