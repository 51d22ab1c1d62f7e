"""Export, import (JSON/YAML body or file upload), master-data sync and its jobs."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.generics import RetrieveAPIView
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.exceptions import problem
from agentmesh.core.parsers import DepthLimitedJSONParser
from agentmesh.core.permissions import is_admin

from ..models import IntegrationJob
from ..services.bundle import (
    EXPORT_KINDS,
    BundleInvalid,
    bundle_dump,
    bundle_export,
    bundle_import,
    bundle_parse,
)
from ..services.sync import sync_job_start
from .bundle_serializers import (
    BundleSerializer,
    ExportRequestSerializer,
    ImportFileRequestSerializer,
    ImportReportSerializer,
    ImportRequestSerializer,
    IntegrationJobSerializer,
    SyncRequestSerializer,
)

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class YAMLBundleParser(BaseParser):
    """An import body in YAML: size-capped, safe_load with a bound on aliases."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = bundle_parse(stream.read(settings.MAX_REQUEST_BODY_BYTES + 1))
        except BundleInvalid as exc:
            raise ParseError(f"YAML parse error - {exc.detail[next(iter(exc.detail))][0]}") from exc
        return data


class XYAMLBundleParser(YAMLBundleParser):
    media_type = "application/x-yaml"


class ExportView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integration_export",
        request=ExportRequestSerializer,
        responses={(200, "application/json"): BundleSerializer, (200, "application/yaml"): BundleSerializer},
    )
    def post(self, request):
        """Export what you own (an admin: the whole system) as a versioned bundle; no secret values."""
        return self._export(request, request.data)

    @extend_schema(
        operation_id="integration_export_read",
        parameters=[
            OpenApiParameter(
                "include", str, many=True, enum=list(EXPORT_KINDS), description="Kinds to export."
            ),
            OpenApiParameter(
                "as", str, enum=["json", "yaml"], description="Default json (`format` is DRF's own)."
            ),
        ],
        responses={(200, "application/json"): BundleSerializer, (200, "application/yaml"): BundleSerializer},
    )
    def get(self, request):
        """Export as a bundle, like POST, for readers that can only GET: another instance's
        master-data sync through an API connection, a catalogue mirror."""
        query = {"format": request.query_params.get("as", "json")}
        if "include" in request.query_params:
            query["include"] = request.query_params.getlist("include")
        return self._export(request, query)

    def _export(self, request, data) -> HttpResponse:
        params = ExportRequestSerializer(data=data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        bundle = bundle_export(user=request.user, include=data.get("include"), ids=data.get("ids"))
        if data["format"] == "yaml":
            return HttpResponse(bundle_dump(bundle, "yaml"), content_type="application/yaml; charset=utf-8")
        return Response(bundle)


class _ImportBase(APIView):
    permission_classes = [IsAuthenticated]

    def run_import(self, request, bundle, *, dry_run: bool, on_conflict: str) -> Response:
        report = bundle_import(bundle=bundle, actor=request.user, dry_run=dry_run, on_conflict=on_conflict)
        if report["ok"]:
            return Response(report)
        # The one error shape, each failing field named by its path in the bundle; the whole
        # per-item report rides along under `report`.
        failed = [entry for entry in report["items"] if entry["status"] == "error"]
        errors = [error for entry in failed for error in entry["errors"]]
        body = problem(400, f"Nothing imported: {len(failed)} item(s) failed validation.", errors)
        return Response({**body, "report": report}, status=status.HTTP_400_BAD_REQUEST)


class ImportView(_ImportBase):
    # JSON as everywhere; YAML only here (and the bundle is then the whole body).
    parser_classes = [DepthLimitedJSONParser, YAMLBundleParser, XYAMLBundleParser]

    @extend_schema(
        operation_id="integration_import",
        request=ImportRequestSerializer,
        responses={200: ImportReportSerializer},
    )
    def post(self, request):
        """Import a bundle (JSON {bundle, dry_run, on_conflict}, or a YAML bundle with those in the query)."""
        if request.content_type.split(";")[0].strip() in YAML_MEDIA_TYPES:
            options = ImportRequestSerializer(
                data={
                    "bundle": request.data,
                    **{k: v for k, v in request.query_params.items() if k != "bundle"},
                }
            )
        else:
            options = ImportRequestSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        data = options.validated_data
        return self.run_import(
            request, data["bundle"], dry_run=data["dry_run"], on_conflict=data["on_conflict"]
        )


class ImportFileView(_ImportBase):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="integration_import_file",
        request={"multipart/form-data": ImportFileRequestSerializer},
        responses={200: ImportReportSerializer},
    )
    def post(self, request):
        """Import a bundle file (JSON or YAML, multipart upload, size-capped)."""
        options = ImportFileRequestSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        data = options.validated_data
        upload = data["file"]
        if upload.size > settings.MAX_REQUEST_BODY_BYTES:
            raise BundleInvalid(
                f"The file is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.", field="file"
            )
        bundle = bundle_parse(upload.read())
        return self.run_import(request, bundle, dry_run=data["dry_run"], on_conflict=data["on_conflict"])


class SyncMasterDataView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="integration_sync_master_data",
        request=SyncRequestSerializer,
        responses={202: IntegrationJobSerializer},
    )
    def post(self, request):
        """Pull master data from a remote export (URL or API connection) and upsert it by name, as a job (202)."""
        params = SyncRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        job = sync_job_start(
            owner=request.user,
            url=data.get("source"),
            connection=data.get("connection"),
            path=data["path"],
            kinds=data.get("kinds"),
            dry_run=data["dry_run"],
            on_conflict=data["on_conflict"],
        )
        job.refresh_from_db()
        return Response(IntegrationJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class IntegrationJobView(RetrieveAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = IntegrationJobSerializer

    def get_queryset(self):
        queryset = IntegrationJob.objects.select_related("owner")
        return queryset if is_admin(self.request.user) else queryset.filter(owner=self.request.user)

    @extend_schema(operation_id="integration_jobs_retrieve", responses={200: IntegrationJobSerializer})
    def get(self, request, *args, **kwargs):
        """An integration job (sync): its status and report. Yours, or any for an admin."""
        return super().get(request, *args, **kwargs)
