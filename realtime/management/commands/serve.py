import asyncio
import logging

from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.core.management.base import BaseCommand

from ops.logs import access_log
from realtime.server import AuctionServer

logger = logging.getLogger("auction_site.serve")

CLOCK_JOIN_SECONDS = 0.5


class Command(BaseCommand):
    help = "Serve HTTP and WebSockets with daphne, with the auction clock in the same process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-clock", action="store_true", help="Leave the clock to `manage.py run_clock`.")
        parser.add_argument("--no-access-log", action="store_true")
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="Take the client's address and scheme from X-Forwarded-For/-Proto (only behind a proxy).",
        )

    def handle(self, *args, host: str, port: int, no_clock: bool, no_access_log: bool, proxy_headers: bool, **options):
        from channels.routing import get_default_application
        from twisted.internet import reactor

        from bids.batches import take_bids_from_threads
        from lots.clock import Clock
        from lots.events import LoopPublisher, post_broadcasts_from_threads

        # The project's ASGI application (`ASGI_APPLICATION`): the wiring lives above this app.
        application = get_default_application()
        with_clock = settings.AUCTION_CLOCK_IN_PROCESS and not no_clock

        def start_clock(publisher: LoopPublisher) -> None:
            # The clock and the mailer run in threads of their own, with their
            # own database connections: a round of any length holds up no socket.
            clock = Clock(publisher=publisher).start()
            reactor.addSystemEventTrigger("before", "shutdown", clock.stop)
            # A moment for the threads to end cleanly; one stuck in a query is left to the exit.
            reactor.addSystemEventTrigger("during", "shutdown", clock.join, CLOCK_JOIN_SECONDS)

        logger.info(
            "serving on http://%s:%s/ (clock %s)",
            host,
            port,
            "on" if with_clock else "off",
            extra={"event": "server.start", "port": port},
        )
        if settings.FRONTEND_URL_IS_DEFAULT:
            # Right for `make run` on its default address; elsewhere every e-mailed link would miss the server.
            served_at_default = f"http://{host}:{port}" == settings.FRONTEND_URL
            logger.log(
                logging.INFO if served_at_default else logging.WARNING,
                "FRONTEND_URL is not set: links in e-mails point at %s; set FRONTEND_URL to the address users open",
                settings.FRONTEND_URL,
                extra={"event": "server.frontend_url_default", "frontend_url": settings.FRONTEND_URL},
            )
        forwarded = {
            "proxy_forwarded_address_header": "X-Forwarded-For",
            "proxy_forwarded_port_header": "X-Forwarded-Port",
            "proxy_forwarded_proto_header": "X-Forwarded-Proto",
        }

        def ready() -> None:
            # Broadcasts committed by requests, bids and the clock go out from daphne's loop, in
            # order: a bid's answer never waits on Redis.
            loop = asyncio.get_event_loop()
            publisher = LoopPublisher(loop)
            post_broadcasts_from_threads(publisher)
            # A REST bid waits with the process's WebSocket bids on its lot, for one transaction.
            take_bids_from_threads(loop)
            if with_clock:
                start_clock(publisher)

        server = AuctionServer(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            # Daphne's own access log writes the full URI, query string and all.
            action_logger=None if no_access_log else access_log,
            ready_callable=ready,
            **(forwarded if proxy_headers else {}),
        )
        try:
            server.run()
        finally:
            take_bids_from_threads(None)
