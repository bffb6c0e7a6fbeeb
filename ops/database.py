"""One plain connection to the configured PostgreSQL database: no pool, no retries, a short timeout.

Django's pool retries a failed connection in the background until its timeout
(10 s), logging a warning at each try, and then raises a `PoolTimeout` that
names no cause: `migrate` on a database that does not exist printed twelve
warnings and a traceback. One plain connection first says what is wrong.
"""

from __future__ import annotations

import psycopg
from django.db import connections

CONNECT_TIMEOUT_SECONDS = 5


def database_problem(alias: str = "default") -> str | None:
    """Why the PostgreSQL database `alias` cannot be used, in one line; None when it answers, or is not PostgreSQL."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    params = connection.get_connection_params()
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    try:
        psycopg.connect(**params).close()
    except psycopg.OperationalError as exc:
        db = connection.settings_dict
        if f'database "{db["NAME"]}" does not exist' in str(exc):
            options = [f"-h {db['HOST']}" if db["HOST"] else "", f"-p {db['PORT']}" if db["PORT"] else ""]
            options.append(f"-U {db['USER']}" if db["USER"] else "")
            createdb = " ".join(["createdb", *filter(None, options), db["NAME"]])
            return f'database "{db["NAME"]}" does not exist: create it first (`{createdb}`)'
        reason = " ".join(str(exc).split())
        return f"PostgreSQL did not let us in: {reason}"
    return None
