from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer
from masterdata.models import Secret

from ..models import ApiConnection


class ApiConnectionSerializer(StrictModelSerializer):
    """The credential is a master-data secret: responses carry its id and mask only."""

    owner = OwnerField()
    secret = serializers.PrimaryKeyRelatedField(
        queryset=Secret.objects.all(),
        required=False,
        allow_null=True,
        error_messages={"does_not_exist": "No usable secret with this id."},
        help_text="Secret holding the token, API key, password or OAuth2 client secret.",
    )
    secret_mask = serializers.SerializerMethodField(help_text="The secret's mask; null without one.")
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=50)
    default_headers = serializers.DictField(
        child=serializers.CharField(max_length=2000, allow_blank=True),
        required=False,
        help_text="Sent with every request; no credentials (Authorization, API keys…): use auth.",
    )

    class Meta:
        model = ApiConnection
        fields = [
            "id",
            "name",
            "description",
            "base_url",
            "auth_type",
            "secret",
            "secret_mask",
            "key_name",
            "username",
            "token_url",
            "client_id",
            "scopes",
            "audience",
            "default_headers",
            "connect_timeout",
            "read_timeout",
            "health_path",
            "last_check_at",
            "last_check_ok",
            "last_check_status",
            "last_check_error",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_check_at", "last_check_ok", "last_check_status", "last_check_error"]
        extra_kwargs = {
            "connect_timeout": {"min_value": 0.1, "max_value": 300},
            "read_timeout": {"min_value": 0.1, "max_value": 300},
        }

    def get_secret_mask(self, connection) -> str | None:
        return connection.secret.mask if connection.secret_id else None


class ExternalToolRequestSerializer(StrictSerializer):
    # Checked by the service: an enum named `kind` exists elsewhere in the schema already.
    kind = serializers.CharField(max_length=20, help_text="openapi, mcp or http.")
    url = serializers.CharField(
        required=False,
        max_length=2000,
        help_text="OpenAPI document URL, MCP server URL, or the HTTP tool's URL (a path with a connection).",
    )
    document = serializers.JSONField(required=False, help_text="An inline OpenAPI 3 document (openapi).")
    secret = serializers.UUIDField(
        required=False, allow_null=True, help_text="Secret for auth: bearer token, or MCP headers."
    )
    connection = serializers.UUIDField(
        required=False, allow_null=True, help_text="API connection giving base URL and auth (openapi, http)."
    )
    operations = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=500,
        help_text="Which operations (openapi) or server tools (mcp) to import; default all.",
    )
    name = serializers.CharField(required=False, max_length=64, help_text="The HTTP tool's name (http).")
    method = serializers.ChoiceField(
        choices=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], required=False, default="GET"
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")
    category = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    deploy = serializers.BooleanField(required=False, default=False)
    dry_run = serializers.BooleanField(required=False, default=False)


class ExternalToolItemSerializer(StrictSerializer):
    id = serializers.UUIDField(allow_null=True, help_text="Null in a dry run.")
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField(allow_null=True, help_text="Null in a dry run.")
    description = serializers.CharField(allow_blank=True)
    config = serializers.DictField()
    parameters_schema = serializers.DictField()


class ExternalToolResultSerializer(StrictSerializer):
    dry_run = serializers.BooleanField()
    deployed = serializers.BooleanField()
    tools = ExternalToolItemSerializer(many=True)
