from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from .permissions import SHAREABLE_ACTIONS


class StrictFieldsMixin:
    """Reject a body field the serializer does not declare: 400 naming it (code `unknown_field`).

    A typo must not silently lose what the user meant. Declared read-only fields (`id`,
    `owner`, `created_at` …) are accepted and ignored, so what a GET returns can be sent back.
    Nested serializers and list items check their own fields when they are strict too."""

    def to_internal_value(self, data):
        unknown = []
        if isinstance(data, Mapping):
            unknown = [name for name in data if name not in self.fields]
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not unknown or not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError({**_unknown_errors(unknown), **exc.detail}) from exc
        if unknown:
            raise serializers.ValidationError(_unknown_errors(unknown))
        return value


def _unknown_errors(names) -> dict:
    return {name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for name in names}


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    """Base of every API input serializer."""


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """Base of every API model serializer."""


def representation(serializer_class: type[serializers.Serializer]):
    """`render(instance) -> dict` with `serializer_class`, its fields built once.

    For hot responses: building a serializer's fields (deep copies of every declared field)
    costs more than rendering one object. Only for serializers that read no context
    (to_representation keeps no per-call state on the instance)."""
    return serializer_class().to_representation


class ShareRequestSerializer(StrictSerializer):
    users = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        many=True,
        required=False,
    )
    groups = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), many=True, required=False
    )
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=SHAREABLE_ACTIONS), min_length=1, default=lambda: ["view"]
    )
    revoke = serializers.BooleanField(default=False)

    def validate(self, attrs):
        if not attrs.get("users") and not attrs.get("groups"):
            raise serializers.ValidationError({"users": ["Name at least one user or group."]})
        return attrs


class ShareHolderSerializer(StrictSerializer):
    id = serializers.CharField()
    actions = serializers.ListField(child=serializers.CharField())


class ShareUserSerializer(ShareHolderSerializer):
    username = serializers.CharField()


class ShareGroupSerializer(ShareHolderSerializer):
    name = serializers.CharField()


class SharesSerializer(StrictSerializer):
    users = ShareUserSerializer(many=True)
    groups = ShareGroupSerializer(many=True)


class OwnerField(serializers.SlugRelatedField):
    """Read-only owner username."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="username", read_only=True, **kwargs)
