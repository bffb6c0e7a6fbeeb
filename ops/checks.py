"""System checks of the production settings (`manage.py check`; every management command runs them)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from ops.ratelimit import parse_rate


@register()
def check_mail_backend(app_configs, **kwargs) -> list:
    """Off DEBUG, never the console backend: it writes password-reset links to the logs."""
    if settings.DEBUG or settings.EMAIL_BACKEND != settings.CONSOLE_EMAIL_BACKEND:
        return []
    return [
        Error(
            "EMAIL_BACKEND is the console backend with DEBUG off: password-reset links would be written to the logs.",
            hint="Set EMAIL_HOST (SMTP), or unset EMAIL_BACKEND to write mail to files in EMAIL_FILE_PATH.",
            id="auction_site.E001",
        )
    ]


@register(Tags.security, deploy=True)
def check_mail_is_sent(app_configs, **kwargs) -> list:
    if settings.DEBUG or settings.EMAIL_BACKEND != settings.FILE_EMAIL_BACKEND:
        return []
    return [
        Warning(
            f"E-mail is written to files in {settings.EMAIL_FILE_PATH}, not sent.",
            hint="Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, ...) to send it through an SMTP server.",
            id="auction_site.W001",
        )
    ]


@register()
def check_throttle_rates(app_configs, **kwargs) -> list:
    errors = []
    for name in ("THROTTLE_AUTH", "THROTTLE_LOGIN_ACCOUNT", "THROTTLE_PASSWORD_RESET"):
        try:
            parse_rate(getattr(settings, name))
        except ValueError as exc:
            errors.append(Error(f"{name}: {exc}", id="auction_site.E002"))
    return errors
