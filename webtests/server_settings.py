"""Settings of the server that the browser tests start: the real ones, with a fast password hasher.

The production hasher spends ~0.3 s per hash by design; the suite registers
and logs in a few dozen times, like the root conftest's `_fast_password_hasher`.
"""

from auction_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
