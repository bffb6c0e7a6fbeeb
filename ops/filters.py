"""Filter backends for the REST lists that refuse what they cannot honour."""

from django.db.models import QuerySet
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from ops.exceptions import InvalidInput


class StrictOrderingFilter(OrderingFilter):
    """DRF's `?ordering=`, with a field outside the view's `ordering_fields` a 400 `invalid_ordering`.

    DRF drops such a field silently: a client would read a list in an order it did not ask for.
    The primary key breaks ties, so that pages neither repeat nor skip rows that sort alike.
    """

    def get_ordering(self, request: Request, queryset: QuerySet, view) -> list[str]:
        params = request.query_params.get(self.ordering_param)
        if not params:
            return self.get_default_ordering(view)
        fields = [param.strip() for param in params.split(",")]
        allowed = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        unknown = [field for field in fields if field.removeprefix("-") not in allowed]
        if unknown:
            raise InvalidInput(
                "invalid_ordering",
                f"Cannot order by {unknown[0]!r}: use one of {', '.join(allowed)}, with `-` for descending.",
            )
        if not {"pk", "-pk"} & set(fields):
            fields.append("pk")
        return fields

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        allowed = ", ".join(name for name, _ in self.get_valid_fields(view.get_queryset(), view))
        parameters[0]["description"] = f"Any of {allowed}; `-` first for descending, commas between several."
        return parameters
