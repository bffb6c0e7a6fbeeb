from django.conf import settings
from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path, re_path
from django.views.generic import TemplateView
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.throttling import throttle_login_page
from accounts.urls import auth_urlpatterns, users_urlpatterns
from bids import urls as bid_urls
from lots import urls as lot_urls
from ops.health import HealthApi, ReadyApi
from ops.metrics import metrics_view


def page(template: str):
    """A page of the live bidding front end: a template whose scripts call the public API."""
    return TemplateView.as_view(template_name=f"pages/{template}")


page_urlpatterns = [
    path("", page("lot_list.html"), name="page-lots"),
    path("lots/<int:lot_id>/", page("lot_detail.html"), name="page-lot"),
    path("auctions/<slug:slug>/", page("sale.html"), name="page-sale"),
    path("me/", page("me.html"), name="page-me"),
    path("selling/", page("selling.html"), name="page-selling"),
    path("login/", page("login.html"), name="page-login"),
    path("register/", page("register.html"), name="page-register"),
    path("forgot-password/", page("forgot_password.html"), name="page-forgot-password"),
    # The link in the password-reset e-mail (accounts.services.request_password_reset).
    path("reset-password/", page("reset_password.html"), name="page-reset-password"),
    path("account/", page("account.html"), name="page-account"),
    path("notifications/", page("notifications.html"), name="page-notifications"),
]

urlpatterns = [
    *page_urlpatterns,
    # The HTML login forms, throttled like the REST log-ins (matched before the admin's and DRF's own).
    path("admin/login/", throttle_login_page(admin.site.login)),
    path("api-auth/login/", throttle_login_page(LoginView.as_view(template_name="rest_framework/login.html"))),
    path("admin/", admin.site.urls),
    path("api/health/", HealthApi.as_view(), name="health"),
    path("api/ready/", ReadyApi.as_view(), name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/auth/", include(auth_urlpatterns)),
    path("api/users/", include(users_urlpatterns)),
    path("api/users/", include(lot_urls.me_urlpatterns)),
    path("api/users/", include(bid_urls.me_urlpatterns)),
    path("api/lots/", include(lot_urls.lot_urlpatterns)),
    path("api/lots/", include(bid_urls.lot_urlpatterns)),
    path("api/auctions/", include(lot_urls.auction_urlpatterns)),
    path("api/auctions/", include(bid_urls.auction_urlpatterns)),
    path("api-auth/", include("rest_framework.urls")),
]

handler400 = "ops.exceptions.bad_request"
handler404 = "ops.exceptions.not_found"
handler500 = "ops.exceptions.server_error"

if settings.DEBUG:
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]
