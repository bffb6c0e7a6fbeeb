from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from lots.exceptions import InvalidAmount
from lots.pricing import parse_money


@extend_schema_field({"type": "string", "format": "decimal", "example": "150.00"})
class MoneyField(serializers.Field):
    """Money as a decimal string; malformed amounts fail with `invalid_amount`."""

    default_error_messages = {"invalid_amount": "Not a valid amount."}

    def to_internal_value(self, data: object) -> Decimal:
        try:
            return parse_money(data, field=self.field_name or "amount", places=2)
        except InvalidAmount as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from exc

    def to_representation(self, value: Decimal) -> str:
        return f"{value:.2f}"
