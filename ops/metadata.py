"""The REST framework's OPTIONS answer, with each field's default: what a form should start from."""

from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.metadata import SimpleMetadata


class FieldDefaultsMetadata(SimpleMetadata):
    """DRF's own description of the fields a POST takes, plus `default` where a field has one.

    A callable default is called: it reads a setting (the server's default currency) at request time.
    """

    def get_field_info(self, field: serializers.Field) -> dict:
        info = super().get_field_info(field)
        default = field.default
        if default is not empty and not getattr(default, "requires_context", False):
            info["default"] = default() if callable(default) else default
        return info
