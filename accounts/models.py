from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class User(AbstractUser):
    """A bidder, seller or member of staff."""

    email = models.EmailField("email address")
    email_notifications = models.BooleanField(
        default=True, help_text="Send auction notifications (outbid, won, sold) by e-mail."
    )
    # Raised when the user's sessions end (logout, password change, deactivation):
    # a socket authenticated under an older value may no longer write.
    session_epoch = models.PositiveIntegerField(default=0, editable=False)

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]
