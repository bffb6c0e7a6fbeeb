from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


class UsernameOrEmailBackend(ModelBackend):
    """Log in with a username or an e-mail address (case-insensitive)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs
    ):
        if username is None or password is None:
            return None
        user_model = get_user_model()
        users = user_model._default_manager
        # Usernames may contain "@" too: an e-mail address wins, so nobody can
        # lock a person out by taking their address as a username.
        user = users.filter(email__iexact=username).first() if "@" in username else None
        if user is None:
            user = users.filter(username=username).first()
        if user is None:
            # Spend the same time as a real check so timing does not reveal
            # whether the account exists.
            user_model().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
