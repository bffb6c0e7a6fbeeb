"""Queries per request of the benchmarked paths, on the benchmark's database: `python -m bench.queries PATH`.

Run as a subprocess with the benchmark's environment (like `bench.seed`); prints JSON.
"""

import json
import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auction_site.settings")
    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    counts = {}
    for path in sys.argv[1:]:
        client.get(path)  # Warm: the first request may load what later ones reuse.
        with CaptureQueriesContext(connection) as captured:
            status = client.get(path).status_code
        counts[path] = {"status": status, "queries": len(captured.captured_queries)}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
