from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest


def find_user(identifier: str):
    """The account a login names: by e-mail address (case-insensitive) when it has an "@", else by username."""
    users = get_user_model()._default_manager
    # Usernames may contain "@" too: an e-mail address wins, so nobody can
    # lock a person out by taking their address as a username.
    user = users.filter(email__iexact=identifier).first() if "@" in identifier else None
    if user is None:
        user = users.filter(username=identifier).first()
    return user


class UsernameOrEmailBackend(ModelBackend):
    """Log in with a username or an e-mail address (case-insensitive)."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs
    ):
        if username is None or password is None:
            return None
        user = find_user(username)
        if user is None:
            # Spend the same time as a real check so timing does not reveal
            # whether the account exists.
            get_user_model()().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
