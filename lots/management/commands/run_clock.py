import asyncio
import signal

from django.core.management.base import BaseCommand

from lots.clock import run_clock


class Command(BaseCommand):
    help = "Run the auction clock: open and close lots on time (any number may run at once)."

    def handle(self, *args, **options):
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_clock(stop)
