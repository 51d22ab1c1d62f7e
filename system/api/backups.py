"""/api/v1/system/backup (start a backup job) and /api/v1/system/backups (the catalogue)."""

from pathlib import PurePosixPath

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveDestroyAPIView, get_object_or_404
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.filters import FilterSet
from agentmesh.core.permissions import is_admin

from .. import services
from ..models import Backup
from .backups_serializers import BackupRequestSerializer, BackupSerializer


class IsPlatformAdmin(BasePermission):
    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


class BackupFilter(FilterSet):
    class Meta:
        model = Backup
        fields = ["status"]  # no `format`: DRF reads that query parameter itself


class BackupCreateView(APIView):
    permission_classes = [IsPlatformAdmin]

    @extend_schema(
        operation_id="system_backup", request=BackupRequestSerializer, responses={202: BackupSerializer}
    )
    def post(self, request):
        """Start a backup of the database (admin): a job a worker runs; poll its `id` under
        /system/backups until `succeeded` (size, SHA-256, schema version, download) or `failed`."""
        params = BackupRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        backup = services.backup_start(
            requested_format=params.validated_data["format"],
            note=params.validated_data["note"],
            actor=request.user,
        )
        backup.refresh_from_db()
        return Response(
            BackupSerializer(backup, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class BackupListView(ListAPIView):
    permission_classes = [IsPlatformAdmin]
    serializer_class = BackupSerializer
    queryset = Backup.objects.all()
    filterset_class = BackupFilter
    search_fields = ["note", "file_name", "requested_by"]
    ordering_fields = ["created_at", "size_bytes"]
    ordering = ["-created_at"]

    @extend_schema(operation_id="system_backups_list")
    def get(self, request, *args, **kwargs):
        """Backups, newest first (admin): status, format, size, SHA-256, schema version."""
        return super().get(request, *args, **kwargs)


class BackupDetailView(RetrieveDestroyAPIView):
    permission_classes = [IsPlatformAdmin]
    serializer_class = BackupSerializer
    queryset = Backup.objects.all()
    lookup_url_kwarg = "id"

    @extend_schema(operation_id="system_backups_retrieve")
    def get(self, request, *args, **kwargs):
        """One backup (admin)."""
        return super().get(request, *args, **kwargs)

    @extend_schema(operation_id="system_backups_destroy", responses={204: None})
    def delete(self, request, *args, **kwargs):
        """Delete a backup (admin): its archive leaves the storage and its record goes (409 while it runs)."""
        return super().delete(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.backup_delete(backup=instance)


class BackupDownloadView(APIView):
    permission_classes = [IsPlatformAdmin]

    @extend_schema(
        operation_id="system_backups_download",
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
    )
    def get(self, request, id):  # noqa: A002 (the route's parameter)
        """The backup archive as a file download (admin; 404 while it has none)."""
        backup = get_object_or_404(Backup, pk=id)
        handle = services.backup_open(backup=backup)
        if isinstance(request._request, ASGIRequest):
            # Under ASGI a synchronous file iterator would be read whole into memory first.
            response = StreamingHttpResponse(_async_chunks(handle), content_type="application/zip")
        else:
            response = FileResponse(handle, content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(
            True, PurePosixPath(backup.file_name).name
        )
        if backup.size_bytes is not None:
            response["Content-Length"] = str(backup.size_bytes)
        return response


async def _async_chunks(handle, size: int = 1 << 20):
    try:
        while chunk := await sync_to_async(handle.read)(size):
            yield chunk
    finally:
        await sync_to_async(handle.close)()
