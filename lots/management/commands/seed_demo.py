from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from lots.models import Auction, Lot
from lots.services import create_lot

DEMO_USERS = [
    # username, password, is_staff
    ("admin", "admin-demo-pass", True),
    ("alice", "alice-demo-pass", False),
    ("bob", "bob-demo-pass", False),
]


class Command(BaseCommand):
    help = "Create demo users and lots (only when DEBUG is on); safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo data created.")
            return
        user_model = get_user_model()
        users = {}
        for username, password, is_staff in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username,
                defaults={"email": f"{username}@example.com", "is_staff": is_staff, "is_superuser": is_staff},
            )
            if created:
                user.set_password(password)
                user.save()
            users[username] = user
        if not Lot.objects.exists():
            self._create_lots(seller=users["admin"])
        self.stdout.write(self.style.SUCCESS("Demo accounts (username / password):"))
        for username, password, is_staff in DEMO_USERS:
            role = "staff, /admin/" if is_staff else "bidder"
            self.stdout.write(f"  {username} / {password}  ({role})")

    def _create_lots(self, *, seller) -> None:
        now = timezone.now()
        sale, _ = Auction.objects.get_or_create(
            slug="autumn-sale", defaults={"title": "Autumn sale", "description": "Furniture and lighting."}
        )
        lots = [
            ("Art deco table lamp", "25.00", timedelta(minutes=10), {"soft_close_seconds": 60}),
            ("Walnut sideboard", "300.00", timedelta(hours=1), {"reserve_price": Decimal("450.00")}),
            ("Brass candlesticks (pair)", "15.00", timedelta(hours=2), {"buy_now_price": Decimal("60.00")}),
        ]
        for title, price, duration, extra in lots:
            create_lot(
                seller=seller,
                title=title,
                starting_price=Decimal(price),
                ends_at=now + duration,
                auction=sale,
                description=f"{title}, in good condition.",
                **extra,
            )
        create_lot(
            seller=seller,
            title="Oak bookcase",
            starting_price=Decimal("80.00"),
            starts_at=now + timedelta(minutes=5),
            ends_at=now + timedelta(hours=3),
        )
