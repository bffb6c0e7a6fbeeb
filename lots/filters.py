import django_filters
from django import forms
from django.utils import timezone

from lots import pricing
from lots.models import MONEY, Lot, LotStatus
from lots.selectors import with_effective_status


class LotFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("min_price"), cleaned.get("max_price")
        if low is not None and high is not None and low > high:
            raise forms.ValidationError(
                {"max_price": forms.ValidationError("max_price is below min_price.", code="invalid_price_range")}
            )
        return cleaned


def _currency_choices() -> list[tuple[str, str]]:
    return [(code, code) for code in sorted(pricing.currencies())]


class LotFilter(django_filters.FilterSet):
    # A lot's state at the time of the request: one whose end passed is `closed`
    # even before a clock settles it (`selectors.effective_status`).
    status = django_filters.MultipleChoiceFilter(choices=LotStatus.choices, method="filter_status")
    auction = django_filters.CharFilter(field_name="auction__slug")
    seller = django_filters.CharFilter(field_name="seller__username")
    currency = django_filters.ChoiceFilter(choices=_currency_choices)
    # On `price`, the current price or the starting price before any bid (`selectors.list_visible_lots`).
    min_price = django_filters.NumberFilter(field_name="price", lookup_expr="gte", min_value=0, **MONEY)
    max_price = django_filters.NumberFilter(field_name="price", lookup_expr="lte", min_value=0, **MONEY)

    class Meta:
        model = Lot
        fields = ["status", "auction", "seller", "currency", "min_price", "max_price"]
        form = LotFilterForm

    def filter_status(self, queryset, name: str, value: list[str]):
        if not value:
            return queryset
        return with_effective_status(queryset, now=timezone.now()).filter(effective_status__in=value)
