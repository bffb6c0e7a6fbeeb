"""The benchmark's servers: production settings plus the bench-only URLs (`bench/urls.py`).

Set by `make bench` (DJANGO_SETTINGS_MODULE=bench.settings) for its own servers only;
nothing else loads these URLs.
"""

from auction_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
