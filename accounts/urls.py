from django.urls import path
from rest_framework_simplejwt.views import TokenRefreshView, TokenVerifyView

from accounts import apis
from accounts.serializers import TokenRefreshSerializer, TokenVerifySerializer

auth_urlpatterns = [
    path("register/", apis.RegisterApi.as_view(), name="register"),
    path("token/", apis.TokenObtainApi.as_view(), name="token"),
    path("token/refresh/", TokenRefreshView.as_view(serializer_class=TokenRefreshSerializer), name="token-refresh"),
    path("token/verify/", TokenVerifyView.as_view(serializer_class=TokenVerifySerializer), name="token-verify"),
    path("logout/", apis.LogoutApi.as_view(), name="logout"),
    path("password-reset/", apis.PasswordResetApi.as_view(), name="password-reset"),
    path("password-reset/confirm/", apis.PasswordResetConfirmApi.as_view(), name="password-reset-confirm"),
    path("ws-ticket/", apis.WsTicketApi.as_view(), name="ws-ticket"),
    path("csrf/", apis.CsrfApi.as_view(), name="csrf"),
    path("cookie/login/", apis.CookieLoginApi.as_view(), name="cookie-login"),
    path("cookie/refresh/", apis.CookieRefreshApi.as_view(), name="cookie-refresh"),
    path("cookie/logout/", apis.CookieLogoutApi.as_view(), name="cookie-logout"),
]

users_urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="me"),
    path("me/password/", apis.PasswordChangeApi.as_view(), name="me-password"),
]
