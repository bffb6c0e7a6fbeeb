from django.apps import AppConfig


class AuctionSiteConfig(AppConfig):
    name = "auction_site"

    def ready(self) -> None:
        from auction_site import checks  # noqa: F401  (registers the system checks)
