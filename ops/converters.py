"""Path converters shared by every app's URLs."""

from django.urls import register_converter
from django.urls.converters import IntConverter


class RowIdConverter(IntConverter):
    """A row id in a URL: at most 18 digits, so no id past a 64-bit column reaches a query.

    SQLite's driver raises OverflowError (a 500) for such an id in a foreign key lookup;
    here it is a 404 like any other missing object. The schema states the range
    (`PATH_CONVERTER_OVERRIDES`).
    """

    regex = "[0-9]{1,18}"


register_converter(RowIdConverter, "id")
