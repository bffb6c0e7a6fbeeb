"""The OpenAPI schema's error responses: every operation documents the 4xx/5xx it can answer.

Every error body is `{code, detail[, errors]}` (`ops.exceptions`);
`ErrorAutoSchema` adds that body under each status an operation can really
meet, judged from the view: its method, parameters, authentication,
permissions and throttles. Schemathesis checks every answer against it
(`auction_site/tests/test_openapi_fuzz.py`).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import permissions, serializers

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorSerializer(serializers.Serializer):
    """The body of every error; some codes add fields (`min_next_bid`, `field`)."""

    code = serializers.CharField(help_text="Machine-readable: clients branch on it.")
    detail = serializers.CharField(help_text="For people.")
    errors = serializers.JSONField(required=False, help_text="Validation errors by field (400 only).")


ERROR_DESCRIPTIONS = {
    400: "Malformed or invalid input (`errors` by field)",
    401: "Missing, bad or expired credentials",
    403: "Not allowed (permissions, CSRF)",
    404: "No such object, or no such page",
    409: "A rule refused the request",
    415: "Unsupported request body media type",
    429: "Too many requests",
    503: "The database or Redis is unavailable; retry (`Retry-After`)",
}


class ErrorAutoSchema(AutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            response = responses.setdefault(str(status), self._get_response_for_code(ErrorSerializer, str(status)))
            response["description"] = response.get("description") or ERROR_DESCRIPTIONS[status]
        return operation

    def _error_statuses(self, operation: dict) -> list[int]:
        view = self.view
        unsafe = self.method in UNSAFE_METHODS
        parameters = operation.get("parameters", [])
        authenticates = bool(view.get_authenticators())
        # DRF answers 401 rather than 403 exactly when the view names a WWW-Authenticate scheme.
        challenges = bool(view.get_authenticate_header(view.request))
        restricted = any(not isinstance(permission, permissions.AllowAny) for permission in view.get_permissions())
        statuses = {503}  # any view: the database (or Redis) may be away
        # Bodies and filters are validated; a bad `?page=` is a 404, like DRF's.
        if unsafe or any(p["in"] != "path" and p["name"] != "page" for p in parameters):
            statuses.add(400)
        if challenges:
            statuses.add(401)
        # Permissions, and CSRF for session or cookie credentials on writes.
        if restricted or (unsafe and challenges):
            statuses.add(403)
        if any(p["in"] == "path" for p in parameters) or any(p["name"] == "page" for p in parameters):
            statuses.add(404)
        # The services' rules (`DomainError`) guard the writes of signed-in users.
        if unsafe and authenticates:
            statuses.add(409)
        if "requestBody" in operation:
            statuses.add(415)
        if view.get_throttles():
            statuses.add(429)
        return sorted(statuses)
