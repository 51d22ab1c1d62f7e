from rest_framework import serializers


class ComponentHealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["up", "down"])
    latency_ms = serializers.FloatField()
    error = serializers.CharField(required=False)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    components = serializers.DictField(child=ComponentHealthSerializer())
    checked_at = serializers.DateTimeField()
