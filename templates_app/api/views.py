import io
import json

from django.conf import settings
from django.http import Http404, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.parsers import DepthLimitedJSONParser
from agentmesh.core.permissions import RoleObjectPermission, has_object_action
from agentmesh.core.viewsets import ServiceBackedViewSet
from agents.models import Agent
from masterdata.api.serializers import CategoryCountSerializer
from masterdata.selectors import category_counts
from workflows.models import Workflow

from .. import blueprint, derive, selectors, services
from ..filters import TemplateFilter
from ..models import Template, TemplateVersion
from .serializers import (
    AgentTemplateSerializer,
    ImportFileSerializer,
    InstantiateResultSerializer,
    InstantiateSerializer,
    PreviewSerializer,
    TemplateDocumentSerializer,
    TemplateListSerializer,
    TemplateSerializer,
    TemplateVersionCreateSerializer,
    TemplateVersionSerializer,
    WorkflowTemplateSerializer,
)

# Actions the published catalogue opens to everyone (with the object action they need).
CATALOGUE_ACTIONS = {
    "retrieve": "view",
    "versions": "view",
    "preview": "view",
    "export": "view",
    "instantiate": "use",
}


def _read_capped(stream) -> bytes:
    raw = stream.read(settings.TEMPLATES_IMPORT_MAX_BYTES + 1)
    if len(raw) > settings.TEMPLATES_IMPORT_MAX_BYTES:
        raise ServiceValidationError(
            f"The document is larger than {settings.TEMPLATES_IMPORT_MAX_BYTES} bytes.", field="file"
        )
    return raw


class TemplateDocumentJSONParser(DepthLimitedJSONParser):
    """The import's JSON body, size-capped before it is read whole."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = _read_capped(stream)
        return super().parse(io.BytesIO(raw), media_type, parser_context)


class TemplateDocumentYAMLParser(BaseParser):
    """The import's YAML body: safe_load with size, node and alias limits."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        return blueprint.parse_document(_read_capped(stream))


class TemplateDocumentTextYAMLParser(TemplateDocumentYAMLParser):
    media_type = "text/yaml"


class TemplateViewSet(ServiceBackedViewSet):
    queryset = Template.objects.select_related("owner", "latest_version__created_by")
    serializer_class = TemplateSerializer
    filterset_class = TemplateFilter
    search_fields = ["name", "description", "category"]
    ordering_fields = ["name", "kind", "category", "created_at", "updated_at"]
    http_method_names = ["get", "post", "put", "delete", "head", "options"]
    object_actions = {
        "instantiate": "use",
        "preview": "view",
        "versions": "view",
        "export": "view",
        "create_version": "change",
    }
    create_actions = ("import_template",)

    def get_queryset(self):
        if getattr(self, "_single_object", False):
            return self.queryset.all()
        return selectors.templates_visible_to(self.request.user, self.queryset.all())

    def get_object(self):
        self._single_object = True
        try:
            obj = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        finally:
            self._single_object = False
        if not selectors.template_allows(self.request.user, obj, "view"):
            raise Http404
        self.check_object_permissions(self.request, obj)
        return obj

    def check_object_permissions(self, request, obj):
        needed = CATALOGUE_ACTIONS.get(self.action)
        if needed and selectors.template_allows(request.user, obj, needed):
            return
        super().check_object_permissions(request, obj)

    def get_serializer_class(self):
        return TemplateListSerializer if self.action == "list" else TemplateSerializer

    def perform_content_negotiation(self, request, force=False):
        if self.action == "export":  # ?format= picks the file format here, not a renderer
            return super().perform_content_negotiation(request, force=True)
        return super().perform_content_negotiation(request, force)

    def create_object(self, validated_data):
        return services.template_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.template_update(template=instance, actor=self.request.user, **validated_data)

    def perform_destroy(self, instance):
        services.template_delete(template=instance)

    def _detail(self, template):
        return TemplateSerializer(self.queryset.get(pk=template.pk)).data

    def create(self, request, *args, **kwargs):
        """Create the template and its version 1 (the blueprint is validated: rendered with the
        parameters' defaults or examples, it must pass the real create endpoints' validation)."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        template = self.create_object(dict(serializer.validated_data))
        return Response(self._detail(template), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        """Update the metadata; a changed body or parameters makes a new version."""
        instance = self.get_object()
        serializer = self.get_serializer(instance, data=request.data)
        serializer.is_valid(raise_exception=True)
        template = self.update_object(instance, dict(serializer.validated_data))
        return Response(self._detail(template))

    @extend_schema(
        operation_id="templates_instantiate",
        request=InstantiateSerializer,
        responses={201: InstantiateResultSerializer},
    )
    @action(detail=True, methods=["post"])
    def instantiate(self, request, *args, **kwargs):
        """Create the version's resources for you (all or none): parameters validated, every
        reference resolved among what you may use; `deploy` deploys the tools and agents."""
        template = self.get_object()
        data = InstantiateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version, instances = services.template_instantiate(
            template=template, actor=request.user, **data.validated_data
        )
        result = {
            "template": template.pk,
            "version": version.number,
            "resources": [
                {"key": i.local_key, "kind": i.resource_kind, "id": i.resource_id, "name": i.resource_name}
                for i in instances
            ],
        }
        return Response(InstantiateResultSerializer(result).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="templates_preview",
        request=None,
        parameters=[
            OpenApiParameter("version", int, description="Default: the latest."),
            OpenApiParameter(
                "params", str, description='Parameter values as a JSON object (or one "params.<name>=" each).'
            ),
        ],
        responses={200: PreviewSerializer},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def preview(self, request, *args, **kwargs):
        """The rendered payloads, the resolved references and the validation report. Writes nothing."""
        template = self.get_object()
        version = services.pick_version(template, request.query_params.get("version"))
        params = _query_params(request.query_params, version.parameters)
        result = services.template_preview(
            template=template, actor=request.user, version=version.number, params=params
        )
        return Response(PreviewSerializer(result).data)

    @extend_schema(
        operation_id="templates_versions_list",
        request=None,
        responses={200: TemplateVersionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def versions(self, request, *args, **kwargs):
        """Every version, newest first."""
        template = self.get_object()
        versions = (
            TemplateVersion.objects.filter(template=template).select_related("created_by").order_by("-number")
        )
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(TemplateVersionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="templates_versions_create",
        request=TemplateVersionCreateSerializer,
        responses={201: TemplateVersionSerializer},
    )
    @versions.mapping.post
    def create_version(self, request, *args, **kwargs):
        """A new immutable version (409 when identical to the latest)."""
        template = self.get_object()
        data = TemplateVersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.template_version_create(
            template=template, actor=request.user, **data.validated_data
        )
        return Response(TemplateVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="templates_export",
        request=None,
        parameters=[
            OpenApiParameter("format", str, enum=["yaml", "json"], description="Default: yaml."),
            OpenApiParameter("version", int, description="One version (default: all)."),
        ],
        responses={
            (200, "application/yaml"): TemplateDocumentSerializer,
            (200, "application/json"): TemplateDocumentSerializer,
        },
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def export(self, request, *args, **kwargs):
        """A file download of the exchange format (apiVersion, kind, metadata, versions with
        parameters and body): every version, or one. No secret is ever in it."""
        template = self.get_object()
        fmt = request.query_params.get("format") or "yaml"
        if fmt not in ("yaml", "json"):
            raise ServiceValidationError("yaml or json.", field="format")
        if request.query_params.get("version"):
            versions = [services.pick_version(template, request.query_params["version"])]
        else:
            versions = list(template.versions.order_by("number"))
        content = blueprint.dump(blueprint.document_for(template, versions), fmt)
        media = "application/json" if fmt == "json" else "application/yaml"
        response = HttpResponse(content, content_type=f"{media}; charset=utf-8")
        filename = "".join(c if c.isalnum() or c in "-_" else "-" for c in template.name)[:80] or "template"
        response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
        return response

    @extend_schema(
        operation_id="templates_import",
        request={"application/json": TemplateDocumentSerializer, "multipart/form-data": ImportFileSerializer},
        parameters=[
            OpenApiParameter(
                "on_conflict",
                str,
                enum=list(services.ON_CONFLICT),
                description="When you have a template of that name: fail (409, default), rename, new_version.",
            )
        ],
        responses={201: TemplateSerializer, 200: TemplateSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        filter_backends=[],
        pagination_class=None,
        parser_classes=[
            TemplateDocumentJSONParser,
            TemplateDocumentYAMLParser,
            TemplateDocumentTextYAMLParser,
            MultiPartParser,
        ],
    )
    def import_template(self, request):
        """Import the exchange format (YAML or JSON; the body or a multipart `file`), size-capped,
        safe YAML with bounded aliases, validated like create. 201 with a new template, 200 when
        versions were added to yours (on_conflict=new_version)."""
        data = request.data
        if request.content_type and request.content_type.startswith("multipart/"):
            upload = request.FILES.get("file")
            if upload is None:
                raise ServiceValidationError("A YAML or JSON file.", field="file", code="required")
            data = blueprint.parse_document(_read_capped(upload))
        template, created = services.template_import(
            owner=request.user, document=data, on_conflict=request.query_params.get("on_conflict") or "fail"
        )
        return Response(
            self._detail(template), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="templates_categories", request=None, responses={200: CategoryCountSerializer(many=True)}
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def categories(self, request):
        """Distinct categories of the templates you may see, with counts."""
        return Response(CategoryCountSerializer(category_counts(self.get_queryset()), many=True).data)


def _query_params(query, parameters: dict) -> dict | None:
    """`params=<json object>`, or `params.<name>=<value>` (typed by the parameter's schema)."""
    raw = query.get("params")
    values: dict = {}
    if raw:
        try:
            values = json.loads(raw)
        except ValueError:
            raise ServiceValidationError("A JSON object.", field="params") from None
        if not isinstance(values, dict):
            raise ServiceValidationError("A JSON object.", field="params")
    properties = (parameters or {}).get("properties", {})
    for key, value in query.items():
        if not key.startswith("params."):
            continue
        name = key.removeprefix("params.")
        if (properties.get(name) or {}).get("type", "string") != "string":
            try:
                value = json.loads(value)
            except ValueError:
                raise ServiceValidationError(
                    "Not a value of the parameter's type.", field=f"params.{name}"
                ) from None
        values[name] = value
    return values


class _FromResourceView(APIView):
    """Base of POST /workflows/{id}/template and /agents/{id}/template: the resource must be
    one you may view, and you need the role's permission to create templates."""

    model: type
    permission_classes = [RoleObjectPermission]
    action = "create"  # RoleObjectPermission: the add permission of the template model

    def get_queryset(self):
        return Template.objects.none()

    def resource(self, pk):
        obj = self.model.objects.filter(pk=pk).first()
        if obj is None or not has_object_action(self.request.user, obj, "view"):
            raise Http404
        return obj

    def respond(self, template):
        template = Template.objects.select_related("owner", "latest_version__created_by").get(pk=template.pk)
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)


class WorkflowTemplateView(_FromResourceView):
    model = Workflow

    @extend_schema(
        operation_id="workflows_template",
        summary="Make a template of a workflow",
        request=WorkflowTemplateSerializer,
        responses={201: TemplateSerializer},
    )
    def post(self, request, pk):
        """Make a template of this workflow (its current or chosen version): agents, tools and
        models become references by name, or agents and tools go in a bundle (`include`);
        `parameterize` turns chosen values (input defaults, node config) into parameters."""
        workflow = self.resource(pk)
        data = WorkflowTemplateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.respond(
            derive.template_from_workflow(workflow=workflow, actor=request.user, **data.validated_data)
        )


class AgentTemplateView(_FromResourceView):
    model = Agent

    @extend_schema(
        operation_id="agents_template",
        summary="Make a template of an agent",
        request=AgentTemplateSerializer,
        responses={201: TemplateSerializer},
    )
    def post(self, request, pk):
        """Make a template of this agent: model, prompt, skills, constraints and tools become
        references by name, or the tools go in a bundle (`include: ["tools"]`)."""
        agent = self.resource(pk)
        data = AgentTemplateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.respond(
            derive.template_from_agent(agent=agent, actor=request.user, **data.validated_data)
        )
