import contextlib
from datetime import UTC, datetime

from django.conf import settings
from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.views import TokenObtainPairView

from accounts import services
from accounts.authentication import CookieJWTAuthentication, enforce_csrf
from accounts.serializers import (
    DetailSerializer,
    LogoutSerializer,
    PasswordChangedSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    PasswordResetRequestSerializer,
    RegisterSerializer,
    TokenRefreshSerializer,
    UserSerializer,
    WsTicketSerializer,
)
from accounts.throttling import (
    EmailChangeThrottle,
    LoginThrottle,
    PasswordChangeThrottle,
    PasswordResetThrottle,
    RegistrationThrottle,
)


class RegisterApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [RegistrationThrottle]

    @extend_schema(request=RegisterSerializer, responses={201: UserSerializer})
    def post(self, request: Request) -> Response:
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.register_user(**serializer.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainApi(TokenObtainPairView):
    """simplejwt's log-in, throttled per address and per account."""

    throttle_classes = [LoginThrottle]


class MeApi(generics.RetrieveUpdateAPIView):
    serializer_class = UserSerializer
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [EmailChangeThrottle]
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user

    def perform_update(self, serializer: UserSerializer) -> None:
        services.update_profile(user=serializer.instance, **serializer.validated_data)


class PasswordChangeApi(APIView):
    """Changes the caller's password and ends their every session but the new one it answers with."""

    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [PasswordChangeThrottle]

    @extend_schema(request=PasswordChangeSerializer, responses={200: PasswordChangedSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeSerializer(data=request.data, context={"user": request.user})
        serializer.is_valid(raise_exception=True)
        refresh = services.change_own_password(user=request.user, **serializer.validated_data)
        tokens = {"access": str(refresh.access_token), "refresh": str(refresh)}
        if isinstance(request.successful_authenticator, CookieJWTAuthentication):
            # The page that asked stays logged in; its tokens stay out of reach of scripts.
            response = Response({"detail": "Your password has been changed."})
            _set_token_cookies(response, **tokens)
            return response
        return Response({"detail": "Your password has been changed.", **tokens})


class PasswordResetApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [PasswordResetThrottle]

    @extend_schema(request=PasswordResetRequestSerializer, responses={200: DetailSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordResetRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.request_password_reset(email=serializer.validated_data["email"])
        # The same answer whether or not the address has an account.
        return Response({"detail": "If the address has an account, a reset e-mail is on its way."})


class PasswordResetConfirmApi(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(request=PasswordResetConfirmSerializer, responses={200: DetailSerializer})
    def post(self, request: Request) -> Response:
        serializer = PasswordResetConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.confirm_password_reset(uid=data["uid"], token=data["token"], new_password=data["new_password"])
        return Response({"detail": "Your password has been changed."})


class LogoutApi(APIView):
    """Blacklists the refresh token and closes the user's open sockets (4401)."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @extend_schema(request=LogoutSerializer, responses={200: None})
    def post(self, request: Request) -> Response:
        serializer = LogoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.log_out(refresh=serializer.validated_data["refresh"])
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        return Response({})

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class WsTicketApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={201: WsTicketSerializer})
    def post(self, request: Request) -> Response:
        # The socket it opens lives no longer than the token that bought it.
        expires_at = None
        if request.auth is not None and "exp" in request.auth:
            expires_at = datetime.fromtimestamp(request.auth["exp"], tz=UTC)
        ticket = services.issue_ws_ticket(user=request.user, expires_at=expires_at)
        return Response(
            {"ticket": ticket, "expires_in": settings.WS_TICKET_TTL_SECONDS}, status=status.HTTP_201_CREATED
        )


# --- Tokens in HttpOnly cookies, for browser front ends ----------------------


def _set_token_cookies(response: Response, *, access: str, refresh: str | None) -> None:
    jwt = settings.SIMPLE_JWT
    common = {"httponly": True, "secure": settings.JWT_COOKIE_SECURE, "samesite": settings.JWT_COOKIE_SAMESITE}
    response.set_cookie(
        settings.JWT_ACCESS_COOKIE, access, max_age=int(jwt["ACCESS_TOKEN_LIFETIME"].total_seconds()), **common
    )
    if refresh is not None:
        refresh_max_age = int(jwt["REFRESH_TOKEN_LIFETIME"].total_seconds())
        response.set_cookie(
            settings.JWT_REFRESH_COOKIE, refresh, max_age=refresh_max_age, path="/api/auth/cookie/", **common
        )
        response.set_cookie(settings.JWT_HINT_COOKIE, "1", max_age=refresh_max_age, **{**common, "httponly": False})


def _delete_token_cookies(response: Response) -> None:
    response.delete_cookie(settings.JWT_ACCESS_COOKIE, samesite=settings.JWT_COOKIE_SAMESITE)
    response.delete_cookie(settings.JWT_REFRESH_COOKIE, path="/api/auth/cookie/", samesite=settings.JWT_COOKIE_SAMESITE)
    response.delete_cookie(settings.JWT_HINT_COOKIE, samesite=settings.JWT_COOKIE_SAMESITE)


class CsrfApi(APIView):
    """Sets the CSRF cookie that the cookie endpoints check."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    @method_decorator(ensure_csrf_cookie)
    @extend_schema(responses={200: DetailSerializer})
    def get(self, request: Request) -> Response:
        return Response({"detail": "CSRF cookie set.", "csrf_token": get_token(request)})


class CookieTokenApi(APIView):
    """Base of the cookie endpoints: CSRF-checked, and auth failures answer 401 like /api/auth/token/.

    The CSRF check raises, so a failure gets the API's `{"code": "csrf_failed"}`
    body rather than Django's HTML page.
    """

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        enforce_csrf(request)

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class CookieLoginApi(CookieTokenApi):
    throttle_classes = [LoginThrottle]

    @extend_schema(request=TokenObtainPairSerializer, responses={200: UserSerializer})
    def post(self, request: Request) -> Response:
        serializer = TokenObtainPairSerializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        response = Response(UserSerializer(serializer.user).data)
        _set_token_cookies(
            response, access=serializer.validated_data["access"], refresh=serializer.validated_data["refresh"]
        )
        return response


class CookieRefreshApi(CookieTokenApi):
    @extend_schema(request=None, responses={200: DetailSerializer})
    def post(self, request: Request) -> Response:
        refresh = request.COOKIES.get(settings.JWT_REFRESH_COOKIE)
        if not refresh:
            raise NotAuthenticated("No refresh token cookie.")
        serializer = TokenRefreshSerializer(data={"refresh": refresh})
        try:
            serializer.is_valid(raise_exception=True)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc
        response = Response({"detail": "Tokens refreshed."})
        _set_token_cookies(
            response, access=serializer.validated_data["access"], refresh=serializer.validated_data.get("refresh")
        )
        return response


class CookieLogoutApi(CookieTokenApi):
    @extend_schema(request=None, responses={200: DetailSerializer})
    def post(self, request: Request) -> Response:
        refresh = request.COOKIES.get(settings.JWT_REFRESH_COOKIE)
        if refresh:
            # Already invalid: logging out still clears the cookies.
            with contextlib.suppress(TokenError):
                services.log_out(refresh=refresh)
        response = Response({"detail": "Logged out."})
        _delete_token_cookies(response)
        return response
