from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer

from ..models import Webhook, WebhookDelivery, WorkflowTrigger


class WebhookSerializer(StrictModelSerializer):
    """A webhook; its secret is never returned (only on create, once, in `secret`)."""

    owner = OwnerField()
    event_types = serializers.ListField(child=serializers.CharField(max_length=100), max_length=50)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "name",
            "description",
            "url",
            "event_types",
            "active",
            "secret_mask",
            "failure_count",
            "disabled_at",
            "disabled_reason",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["secret_mask", "failure_count", "disabled_at", "disabled_reason"]


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="The whsec_ signing secret, shown this once: store it now."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]


class WebhookDeliverySerializer(StrictModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook",
            "message_id",
            "event_id",
            "event_type",
            "payload",
            "attempt",
            "status",
            "response_code",
            "response_body",
            "error",
            "duration_ms",
            "next_attempt_at",
            "attempted_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EventTypeSerializer(StrictSerializer):
    type = serializers.CharField()
    description = serializers.CharField()


class WorkflowTriggerSerializer(StrictModelSerializer):
    owner = OwnerField()
    signed = serializers.BooleanField(
        default=True, write_only=True, help_text="Generate a whsec_ secret and require signed requests."
    )
    has_secret = serializers.SerializerMethodField()
    url_path = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowTrigger
        fields = [
            "id",
            "name",
            "workflow",
            "signed",
            "has_secret",
            "active",
            "token_prefix",
            "url_path",
            "last_triggered_at",
            "trigger_count",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["active", "token_prefix", "last_triggered_at", "trigger_count"]

    def get_has_secret(self, obj) -> bool:
        return bool(obj.encrypted_secret)

    def get_url_path(self, obj) -> str:
        return f"/api/v1/integration/hooks/{obj.token_prefix}…"


class WorkflowTriggerCreatedSerializer(WorkflowTriggerSerializer):
    url = serializers.CharField(
        read_only=True, help_text="The full trigger URL, with its token: shown this once."
    )
    token = serializers.CharField(read_only=True, help_text="The token, shown this once.")
    secret = serializers.CharField(
        read_only=True, allow_blank=True, help_text="The whsec_ secret, shown this once."
    )

    class Meta(WorkflowTriggerSerializer.Meta):
        fields = [*WorkflowTriggerSerializer.Meta.fields, "url", "token", "secret"]


class TriggerFiredSerializer(StrictSerializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    created = serializers.BooleanField(
        help_text="False when a signed retry (same webhook-id) found its execution."
    )


class TriggerInputSerializer(StrictSerializer):
    """Any JSON object: the workflow's inputs."""
