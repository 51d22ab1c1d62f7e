"""Request and response shapes of export, import and master-data sync."""

from rest_framework import serializers

from agentmesh.core.serializers import StrictModelSerializer, StrictSerializer

from ..models import IntegrationJob
from ..services.bundle import EXPORT_KINDS, ON_CONFLICT
from ..services.sync import SYNC_KINDS


class ExportRequestSerializer(StrictSerializer):
    include = serializers.ListField(
        child=serializers.ChoiceField(choices=list(EXPORT_KINDS)),
        required=False,
        max_length=len(EXPORT_KINDS),
    )
    ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=1000)
    format = serializers.ChoiceField(choices=["json", "yaml"], default="json")


class BundleSerializer(StrictSerializer):
    """An AgentMeshExport bundle (see the README: apiVersion, kind, metadata, then per kind a list)."""

    apiVersion = serializers.CharField()  # noqa: N815 - the bundle's own key
    kind = serializers.CharField()
    metadata = serializers.DictField(required=False)
    secrets = serializers.ListField(child=serializers.DictField(), required=False)
    skills = serializers.ListField(child=serializers.DictField(), required=False)
    constraints = serializers.ListField(child=serializers.DictField(), required=False)
    prompts = serializers.ListField(child=serializers.DictField(), required=False)
    models = serializers.ListField(child=serializers.DictField(), required=False)
    tools = serializers.ListField(child=serializers.DictField(), required=False)
    agents = serializers.ListField(child=serializers.DictField(), required=False)
    workflows = serializers.ListField(child=serializers.DictField(), required=False)
    templates = serializers.ListField(child=serializers.DictField(), required=False)


class ImportRequestSerializer(StrictSerializer):
    bundle = serializers.JSONField(help_text="The AgentMeshExport bundle (an object).")
    dry_run = serializers.BooleanField(default=False)
    on_conflict = serializers.ChoiceField(choices=list(ON_CONFLICT), default="skip")


class ImportFileRequestSerializer(StrictSerializer):
    file = serializers.FileField(help_text="A JSON or YAML AgentMeshExport bundle.")
    dry_run = serializers.BooleanField(default=False)
    on_conflict = serializers.ChoiceField(choices=list(ON_CONFLICT), default="skip")


class ReportErrorSerializer(StrictSerializer):
    field = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    message = serializers.CharField()


class ReportItemSerializer(StrictSerializer):
    kind = serializers.CharField()
    name = serializers.CharField(allow_blank=True)
    status = serializers.ChoiceField(
        choices=["created", "updated", "skipped", "renamed", "unchanged", "conflict", "error"]
    )
    id = serializers.UUIDField(required=False)
    new_name = serializers.CharField(required=False)
    notes = serializers.ListField(child=serializers.CharField(), required=False)
    errors = ReportErrorSerializer(many=True, required=False)


class ImportReportSerializer(StrictSerializer):
    dry_run = serializers.BooleanField()
    ok = serializers.BooleanField()
    written = serializers.BooleanField()
    counts = serializers.DictField(child=serializers.IntegerField())
    items = ReportItemSerializer(many=True)


class SyncRequestSerializer(StrictSerializer):
    source = serializers.CharField(
        max_length=2000,
        required=False,
        help_text="The URL of an export (JSON or YAML). Give exactly one of `source` and `connection`.",
    )
    connection = serializers.UUIDField(
        required=False,
        help_text=(
            "An API connection you may use: the export is fetched from its base URL + `path` with "
            "its auth (bearer, API key, basic, OAuth2 client credentials). Instead of `source`."
        ),
    )
    path = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="With `connection`: a path starting with / under its base URL (default: the base URL).",
    )
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SYNC_KINDS)), required=False, max_length=len(SYNC_KINDS)
    )
    dry_run = serializers.BooleanField(default=False)
    on_conflict = serializers.ChoiceField(choices=list(ON_CONFLICT), default="overwrite")

    def validate_source(self, value: str) -> str:
        url = serializers.URLField().run_validation(value)
        if not url.startswith(("http://", "https://")):
            raise serializers.ValidationError("An http(s) URL.")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            # The URL is kept in the job's params: no credentials in it.
            raise serializers.ValidationError("No user name or password in the URL.")
        return url

    def validate_path(self, value: str) -> str:
        if value and not value.startswith("/"):
            raise serializers.ValidationError("A path starting with /.")
        return value

    def validate(self, attrs: dict) -> dict:
        if ("source" in attrs) == ("connection" in attrs):
            raise serializers.ValidationError(
                {"source": "Give exactly one of source (a URL) and connection."}, code="required"
            )
        if attrs.get("path") and "connection" not in attrs:
            raise serializers.ValidationError({"path": "A path goes with a connection."})
        return attrs


class IntegrationJobSerializer(StrictModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    # A plain string (one value for now: sync_master_data): a second "kind" enum would collide.
    kind = serializers.CharField(read_only=True, help_text="sync_master_data")

    class Meta:
        model = IntegrationJob
        fields = [
            "id", "kind", "status", "owner", "params", "report", "error",
            "started_at", "finished_at", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields
