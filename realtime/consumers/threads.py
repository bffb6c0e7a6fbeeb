"""The hot paths (a bid, a socket's join) run on PostgreSQL on a few threads of their own.

Not on the one thread every consumer of a process shares (Channels'
thread-sensitive mode): bids on different lots and joins proceed side by
side; a process sends one batch of a lot's bids at a time (`lot.LotBids`). SQLite
takes one writer at a time, so there they keep the shared thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings

HOT_PATH_THREADS = 4
_hot_path_executor = ThreadPoolExecutor(HOT_PATH_THREADS, thread_name_prefix="hot-path")


def on_hot_path_threads(func):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return database_sync_to_async(func)
    return database_sync_to_async(func, thread_sensitive=False, executor=_hot_path_executor)
