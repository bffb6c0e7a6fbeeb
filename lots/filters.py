import django_filters

from lots.models import Lot, LotStatus


class LotFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=LotStatus.choices)
    auction = django_filters.CharFilter(field_name="auction__slug")
    seller = django_filters.CharFilter(field_name="seller__username")

    class Meta:
        model = Lot
        fields = ["status", "auction", "seller"]
