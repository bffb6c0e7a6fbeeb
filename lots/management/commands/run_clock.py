import asyncio
import logging
import os
import signal

from django.core.management.base import BaseCommand

from lots.clock import Clock
from lots.events import LoopPublisher

logger = logging.getLogger("lots.clock")

# SIGTERM/SIGINT to exit, at most: a round stuck in the database is abandoned
# (its transaction rolls back with the connection) rather than waited for.
STOP_SECONDS = 0.5
# Then the broadcasts already queued get this long to go out (a frozen Redis gets no more).
DRAIN_SECONDS = 0.3


class Command(BaseCommand):
    help = "Run the auction clock and the mailer: open and close lots on time (any number may run at once)."

    def handle(self, *args, **options):
        if not asyncio.run(self._run()):
            logger.warning("a round was still in the database at exit: abandoned, its transaction rolls back")
            logging.shutdown()
            # Daemon threads blocked in a query may hold locks the interpreter's exit would wait on.
            os._exit(0)

    async def _run(self) -> bool:
        """Run until SIGTERM or SIGINT; True if every thread ended in time."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        # The clock's broadcasts are sent from this loop, never from its thread.
        publisher = LoopPublisher(loop)
        clock = Clock(publisher=publisher).start()
        await stopping.wait()
        clock.stop()
        ended = await loop.run_in_executor(None, clock.join, STOP_SECONDS)
        await publisher.drain(DRAIN_SECONDS)
        publisher.close()
        return ended
