"""Query-parameter filtering that refuses bad values with a 400 naming the parameter.

`FilterSet` is the base of every filterset: number filters on integer columns accept whole
numbers within the database's range only (an overflow was a 500), numbers on other columns
stay finite, datetimes are taken to UTC (an offset or a date the database cannot hold is
invalid), and booleans are `true`/`false` (django-filter ignores anything else silently).
UUIDs, dates and choices are already validated by django-filter's form fields.
`OrderingFilter` answers 400 for an `ordering` field the view does not allow.
"""

import functools
from datetime import UTC
from decimal import Decimal

import django_filters
from django import forms
from django.db import connection, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend
from django_filters.utils import get_model_field
from rest_framework import filters
from rest_framework.exceptions import ValidationError

FLOAT_LIMIT = Decimal("1e300")


class StrictBooleanField(forms.NullBooleanField):
    """`true`/`false` (also 1/0, True/False); empty means "no filter"; anything else is invalid."""

    TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise forms.ValidationError(_("Enter true or false."), code="invalid")

    def validate(self, value):
        pass


@functools.cache
def _utc_datetime_field(base: type[forms.DateTimeField]) -> type[forms.DateTimeField]:
    """The filter's datetime field, answering in UTC: an offset PostgreSQL cannot take (past
    ±15:59) or a date that leaves the calendar when converted is invalid, not a 500."""

    class UTCDateTimeField(base):
        def to_python(self, value):
            value = super().to_python(value)
            if value is not None and timezone.is_aware(value):
                try:
                    return value.astimezone(UTC)
                except OverflowError:
                    raise forms.ValidationError(_("Date out of range."), code="invalid") from None
            return value

    return UTCDateTimeField


def _integer_range(model_field) -> tuple[int | None, int | None]:
    internal = model_field.get_internal_type()
    if internal in {"AutoField", "SmallAutoField", "BigAutoField"}:
        internal = internal.replace("Auto", "Integer")
    low, high = connection.ops.integer_field_range(internal)
    # SQLite reports no range, but stores 64-bit integers.
    return (low if low is not None else -(2**63), high if high is not None else 2**63 - 1)


class FilterSet(django_filters.FilterSet):
    """Base filterset: see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for filter_ in self.filters.values():
            if isinstance(filter_, django_filters.BooleanFilter):
                filter_.field_class = StrictBooleanField
                filter_.extra["widget"] = forms.TextInput  # the default select maps junk to None
            elif isinstance(filter_, django_filters.NumberFilter):
                self._bound_number(filter_)
            elif isinstance(filter_, django_filters.DateTimeFilter):
                filter_.field_class = _utc_datetime_field(filter_.field_class)

    def _bound_number(self, filter_) -> None:
        model_field = get_model_field(self._meta.model, filter_.field_name) if self._meta.model else None
        if isinstance(model_field, models.ForeignKey):
            model_field = model_field.target_field
        if isinstance(model_field, models.IntegerField | models.AutoField):
            low, high = _integer_range(model_field)
            filter_.field_class = forms.IntegerField
            filter_.extra.setdefault("min_value", low)
            filter_.extra.setdefault("max_value", high)
        else:
            filter_.extra.setdefault("min_value", -FLOAT_LIMIT)
            filter_.extra.setdefault("max_value", FLOAT_LIMIT)


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering filter, but an unknown field is a 400 instead of being ignored."""

    def get_ordering(self, request, queryset, view):
        params = request.query_params.get(self.ordering_param)
        if params:
            fields = [param.strip() for param in params.split(",") if param.strip()]
            invalid = [f for f in fields if not self.remove_invalid_fields(queryset, [f], view, request)]
            if invalid:
                allowed = sorted(
                    name for name, _label in self.get_valid_fields(queryset, view, {"request": request})
                )
                raise ValidationError(
                    {
                        self.ordering_param: [
                            f"Unknown ordering field {invalid[0]!r}; use one of: "
                            + ", ".join(allowed)
                            + " (prefix with - for descending)."
                        ]
                    }
                )
        return super().get_ordering(request, queryset, view)


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend; filtersets built from `filterset_fields` use the base above."""

    filterset_base = FilterSet
