from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from lots.models import Auction, Lot, LotStatus
from lots.services import create_lot

DEMO_USERS = [
    # username, password, is_staff
    ("admin", "admin-demo-pass", True),
    ("alice", "alice-demo-pass", False),
    ("bob", "bob-demo-pass", False),
]

# A demo lot that ends sooner than this is replaced by a fresh one: whoever tries the demo
# after `make run` finds every demo lot open for at least this long.
OPEN_AT_LEAST = timedelta(hours=1)

SALES = {
    "autumn-sale": {"title": "Autumn sale", "description": "Furniture and lighting."},
    # Only approved participants bid: register (REST or the sale's page), then staff approve at /admin/.
    "collectors-sale": {
        "title": "Collectors' sale",
        "description": "Books and prints. Register to bid; staff approve registrations.",
        "requires_registration": True,
    },
}


@dataclass(frozen=True)
class DemoLot:
    title: str
    starting_price: str
    lasts: timedelta
    sale: str | None = None
    extra: dict = field(default_factory=dict)


# The first is lot 1 of a fresh database, the one the README's examples name: it runs a month.
DEMO_LOTS = [
    DemoLot("Art deco table lamp", "25.00", timedelta(days=30), "autumn-sale", {"soft_close_seconds": 60}),
    DemoLot("Walnut sideboard", "300.00", timedelta(days=1), "autumn-sale", {"reserve_price": Decimal("450.00")}),
    DemoLot(
        "Brass candlesticks (pair)", "15.00", timedelta(days=2), "autumn-sale", {"buy_now_price": Decimal("60.00")}
    ),
    DemoLot("Oak bookcase", "80.00", timedelta(days=3)),
    DemoLot("Signed first edition", "120.00", timedelta(days=2), "collectors-sale"),
]


def keep_demo_lots_open(*, seller, now: datetime) -> list[Lot]:
    """Each demo lot open until `now + OPEN_AT_LEAST` at least: the one already open, else a new one.

    Lots that ended stay closed; their replacements are new lots, made through `create_lot`.
    """
    # Made once: what staff change in a sale afterwards stays.
    sales = {slug: Auction.objects.get_or_create(slug=slug, defaults=fields)[0] for slug, fields in SALES.items()}
    open_lots = []
    for demo in DEMO_LOTS:
        lot = (
            Lot.objects.filter(seller=seller, title=demo.title, status=LotStatus.OPEN, ends_at__gte=now + OPEN_AT_LEAST)
            .order_by("pk")
            .first()
        )
        if lot is None:
            lot = create_lot(
                seller=seller,
                title=demo.title,
                starting_price=Decimal(demo.starting_price),
                ends_at=now + demo.lasts,
                auction=sales[demo.sale] if demo.sale else None,
                description=f"{demo.title}, in good condition.",
                now=now,
                **demo.extra,
            )
        open_lots.append(lot)
    return open_lots


class Command(BaseCommand):
    help = "Create the demo users, and keep the demo lots open (only when DEBUG is on); safe to run again."

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="The server's address, for the links printed."
        )

    @transaction.atomic
    def handle(self, *args, url: str, **options):
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
        lots = keep_demo_lots_open(seller=users["admin"], now=timezone.now())
        self.stdout.write(self.style.SUCCESS("Demo accounts (username / password):"))
        for username, password, is_staff in DEMO_USERS:
            role = "staff, /admin/" if is_staff else "bidder"
            self.stdout.write(f"  {username} / {password}  ({role})")
        site = url.rstrip("/")
        self.stdout.write(self.style.SUCCESS("Open demo lots (id, title, end):"))
        for lot in lots:
            sale = f", {lot.auction.title}" if lot.auction else ""
            ends = lot.ends_at.strftime("%Y-%m-%d %H:%M UTC")
            self.stdout.write(f"  {lot.pk}  {lot.title}{sale}, ends {ends}  {site}/lots/{lot.pk}/")
        self.stdout.write(f"Sale with registration: {site}/auctions/collectors-sale/")
