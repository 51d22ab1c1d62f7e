from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from agentmesh.core.serializers import StrictModelSerializer, StrictSerializer

from ..models import Backup
from ..services.backups import REQUESTED_FORMATS


class BackupRequestSerializer(StrictSerializer):
    format = serializers.ChoiceField(
        choices=list(REQUESTED_FORMATS),
        default="auto",
        help_text="auto: pg_dump on PostgreSQL when a compatible client is installed, else portable. "
        "portable restores into SQLite or PostgreSQL; pg_dump into PostgreSQL only.",
    )
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class BackupSerializer(StrictModelSerializer):
    schema_version = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Latest applied migration per app."
    )
    table_rows = serializers.DictField(
        child=serializers.IntegerField(), read_only=True, help_text="Rows per table (portable format)."
    )
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Backup
        fields = [
            "id",
            "status",
            "requested_format",
            "format",
            "note",
            "requested_by",
            "storage",
            "file_name",
            "size_bytes",
            "sha256",
            "duration_seconds",
            "schema_version",
            "database_vendor",
            "table_rows",
            "error",
            "download_url",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_download_url(self, obj) -> str | None:
        if obj.status != "succeeded":
            return None
        return reverse("system-api:backup-download", args=[obj.pk], request=self.context.get("request"))
