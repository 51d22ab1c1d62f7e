from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer

ROLES = ["admin", "developer", "user"]


class FeatureFlagSerializer(StrictSerializer):
    name = serializers.CharField()
    description = serializers.CharField()
    stored = serializers.BooleanField(help_text="False: never changed, on for everyone.")
    state = serializers.ChoiceField(
        choices=["on", "off", "targeted"], help_text="on/off for everyone, or decided per user by the rules."
    )
    everyone = serializers.BooleanField(allow_null=True)
    percent = serializers.FloatField(allow_null=True)
    users = serializers.ListField(child=serializers.IntegerField())
    groups = serializers.ListField(child=serializers.CharField())
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLES))
    superusers = serializers.BooleanField()
    staff = serializers.BooleanField()
    authenticated = serializers.BooleanField()
    note = serializers.CharField(allow_blank=True)
    modified = serializers.DateTimeField(allow_null=True)


class FeatureFlagUpdateSerializer(StrictSerializer):
    everyone = serializers.BooleanField(
        allow_null=True,
        required=False,
        help_text="true: on for everyone; false: off for everyone (503); null: decided by the rules below.",
    )
    percent = serializers.DecimalField(
        max_digits=4,
        decimal_places=1,
        min_value=0,
        max_value=100,
        allow_null=True,
        required=False,
        coerce_to_string=False,
        help_text="Sticky percentage rollout (0-100) when everyone is null.",
    )
    users = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=1000
    )
    groups = serializers.ListField(
        child=serializers.CharField(max_length=150), required=False, max_length=1000
    )
    roles = serializers.ListField(child=serializers.ChoiceField(choices=ROLES), required=False)
    superusers = serializers.BooleanField(required=False)
    staff = serializers.BooleanField(required=False)
    authenticated = serializers.BooleanField(required=False)
    note = serializers.CharField(allow_blank=True, required=False, max_length=2000)
