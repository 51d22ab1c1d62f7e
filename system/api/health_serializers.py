from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer


class ComponentHealthSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=["up", "down"])
    latency_ms = serializers.FloatField()
    error = serializers.CharField(required=False)


class HealthSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    components = serializers.DictField(child=ComponentHealthSerializer())
    checked_at = serializers.DateTimeField()
