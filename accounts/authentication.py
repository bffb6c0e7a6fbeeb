from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import CSRFCheck
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication


def enforce_csrf(request: Request) -> None:
    """Django's CSRF check, for requests a cookie authenticates."""

    def dummy_get_response(_request):  # pragma: no cover - never called
        return None

    check = CSRFCheck(dummy_get_response)
    check.process_request(request)
    reason = check.process_view(request, None, (), {})
    if reason:
        raise exceptions.PermissionDenied(f"CSRF Failed: {reason}", code="csrf_failed")


class CookieJWTAuthentication(JWTAuthentication):
    """The access token from the HttpOnly cookie; unsafe methods need CSRF."""

    def authenticate(self, request: Request):
        raw_token = request.COOKIES.get(settings.JWT_ACCESS_COOKIE)
        if not raw_token:
            return None
        validated_token = self.get_validated_token(raw_token.encode())
        user = self.get_user(validated_token)
        enforce_csrf(request)
        return user, validated_token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
