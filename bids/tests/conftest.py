import pytest

from bids.tests.utils import Inbox


@pytest.fixture
def inbox():
    """Listen on the channel layer the services broadcast to."""
    listener = Inbox()
    yield listener
    listener.close()
