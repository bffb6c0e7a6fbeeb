import django_filters
from django.utils import timezone

from lots.models import Lot, LotStatus
from lots.selectors import with_effective_status


class LotFilter(django_filters.FilterSet):
    # A lot's state at the time of the request: one whose end passed is `closed`
    # even before a clock settles it (`selectors.effective_status`).
    status = django_filters.MultipleChoiceFilter(choices=LotStatus.choices, method="filter_status")
    auction = django_filters.CharFilter(field_name="auction__slug")
    seller = django_filters.CharFilter(field_name="seller__username")

    class Meta:
        model = Lot
        fields = ["status", "auction", "seller"]

    def filter_status(self, queryset, name: str, value: list[str]):
        if not value:
            return queryset
        return with_effective_status(queryset, now=timezone.now()).filter(effective_status__in=value)
