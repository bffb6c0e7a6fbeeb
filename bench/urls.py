"""The site's URLs plus S4's baseline: the same server answering a constant response.

`/bench/constant/` answers every request with the bytes the real listing gave on its
first call (same query string), so the baseline pays for the same server, middleware,
authentication and response size, but not for the queries and the serialization.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path, resolve

from auction_site.urls import urlpatterns as site_urlpatterns

LISTING = "/api/lots/"
_constant: dict[str, bytes] = {}


def constant_listing(request: HttpRequest) -> HttpResponse:
    query = request.META.get("QUERY_STRING", "")
    body = _constant.get(query)
    if body is None:
        match = resolve(LISTING)
        response = match.func(request, *match.args, **match.kwargs)
        response.render()
        body = _constant[query] = response.content
    return HttpResponse(body, content_type="application/json")


urlpatterns = [*site_urlpatterns, path("bench/constant/", constant_listing)]
