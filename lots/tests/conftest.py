import pytest

from bids.tests.utils import Inbox


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The fixtures create users with passwords; the default hasher costs ~0.5 s each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def inbox():
    """Listen on the channel layer the services broadcast to."""
    listener = Inbox()
    yield listener
    listener.close()
