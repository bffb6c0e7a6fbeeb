from ops.exceptions import Forbidden


class SessionEnded(Forbidden):
    """The acting user was deactivated or their sessions ended (logout, password change) since they authenticated."""
