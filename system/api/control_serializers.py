from rest_framework import serializers

from agentmesh.core.serializers import StrictModelSerializer, StrictSerializer

from ..models import ControlRequest
from ..services.control import WORKER_MODES


class RestartInputSerializer(StrictSerializer):
    workers = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        max_length=100,
        help_text="Only these workers (node names such as `celery@host`); default: every worker.",
    )
    mode = serializers.ChoiceField(
        choices=list(WORKER_MODES),
        required=False,
        help_text="`workers` only: `pool_restart` (default) or `shutdown` (warm; for supervised workers).",
    )


class CacheClearInputSerializer(StrictSerializer):
    cache = serializers.CharField(
        required=False, max_length=100, help_text="A cache of settings.CACHES (default: `default`)."
    )
    prefix = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Only the keys starting with this (as the code names them). Not for the file cache.",
    )


class ControlRequestSerializer(StrictModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    result = serializers.JSONField(help_text="What the process that took the request did.")
    replies = serializers.JSONField(
        help_text="Each worker's reply: [{worker, ...}]; empty when none answered."
    )
    parameters = serializers.JSONField()

    class Meta:
        model = ControlRequest
        fields = ["id", "kind", "target", "parameters", "result", "replies", "requested_by", "created_at"]
        read_only_fields = fields
