import asyncio
import sys

from daphne.access import AccessLogGenerator
from daphne.endpoints import build_endpoint_description_strings
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve HTTP and WebSockets with daphne, with the auction clock in the same process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-clock", action="store_true", help="Leave the clock to `manage.py run_clock`.")
        parser.add_argument("--no-access-log", action="store_true")

    def handle(self, *args, host: str, port: int, no_clock: bool, no_access_log: bool, **options):
        from auction_site.asgi import application
        from lots.clock import run_clock

        with_clock = settings.AUCTION_CLOCK_IN_PROCESS and not no_clock
        stop = asyncio.Event()

        def start_clock() -> None:
            # Daphne's asyncio loop is installed but not yet running: the task
            # starts with the server and shares its loop and channel layer.
            asyncio.get_event_loop().create_task(run_clock(stop))

        self.stdout.write(f"Serving on http://{host}:{port}/ (clock {'on' if with_clock else 'off'})")
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            action_logger=None if no_access_log else AccessLogGenerator(sys.stdout),
            ready_callable=start_clock if with_clock else None,
        ).run()
