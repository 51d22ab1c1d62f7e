from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from .permissions import SHAREABLE_ACTIONS


def representation(serializer_class: type[serializers.Serializer]):
    """`render(instance) -> dict` with `serializer_class`, its fields built once.

    For hot responses: building a serializer's fields (deep copies of every declared field)
    costs more than rendering one object. Only for serializers that read no context
    (to_representation keeps no per-call state on the instance)."""
    return serializer_class().to_representation


class ShareRequestSerializer(serializers.Serializer):
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


class ShareHolderSerializer(serializers.Serializer):
    id = serializers.CharField()
    actions = serializers.ListField(child=serializers.CharField())


class ShareUserSerializer(ShareHolderSerializer):
    username = serializers.CharField()


class ShareGroupSerializer(ShareHolderSerializer):
    name = serializers.CharField()


class SharesSerializer(serializers.Serializer):
    users = ShareUserSerializer(many=True)
    groups = ShareGroupSerializer(many=True)


class OwnerField(serializers.SlugRelatedField):
    """Read-only owner username."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="username", read_only=True, **kwargs)
