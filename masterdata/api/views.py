from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.viewsets import ServiceBackedViewSet

from .. import selectors, services
from ..constraints import CONSTRAINT_TYPES
from ..filters import ConstraintFilter, ModelConfigFilter, PromptFilter, SecretFilter, SkillFilter
from ..models import Constraint, ModelConfig, Prompt, Secret, Skill
from ..providers import PROVIDERS
from .serializers import (
    CategoryCountSerializer,
    ConstraintSerializer,
    ConstraintTypeSerializer,
    MasterDataStatsSerializer,
    ModelConfigSerializer,
    PromptDetailSerializer,
    PromptRenderRequestSerializer,
    PromptRenderSerializer,
    PromptSerializer,
    ProviderSerializer,
    SecretSerializer,
    SkillSearchResultSerializer,
    SkillSerializer,
)

MAX_QUERY_CHARS = 200


class SkillViewSet(ServiceBackedViewSet):
    queryset = Skill.objects.select_related("owner")
    serializer_class = SkillSerializer
    filterset_class = SkillFilter
    search_fields = ["name", "description", "category", "slug"]
    ordering_fields = ["name", "category", "type", "created_at", "updated_at"]

    def create_object(self, validated_data):
        return services.skill_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.skill_update(skill=instance, **validated_data)

    @extend_schema(
        operation_id="master_data_skills_categories",
        request=None,
        responses={200: CategoryCountSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def categories(self, request):
        """Distinct skill categories (of the skills you may see) with their counts."""
        rows = selectors.category_counts(self.get_queryset())
        return Response(CategoryCountSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="master_data_skills_search",
        request=None,
        parameters=[OpenApiParameter("q", str, required=True, description="Words to look for.")],
        responses={200: SkillSearchResultSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], filter_backends=[DjangoFilterBackend])
    def search(self, request):
        """Skills ranked by relevance over name, tags and description (name matches rank highest)."""
        query = request.query_params.get("q", "").strip()
        if not query:
            raise ServiceValidationError("Give a search text in `q`.", field="q", code="required")
        if len(query) > MAX_QUERY_CHARS:
            raise ServiceValidationError(f"At most {MAX_QUERY_CHARS} characters.", field="q")
        results = selectors.skill_search(self.filter_queryset(self.get_queryset()), query)
        page = self.paginate_queryset(results)
        return self.get_paginated_response(SkillSearchResultSerializer(page, many=True).data)


class ConstraintViewSet(ServiceBackedViewSet):
    queryset = Constraint.objects.select_related("owner")
    serializer_class = ConstraintSerializer
    filterset_class = ConstraintFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "type", "created_at", "updated_at"]

    def create_object(self, validated_data):
        return services.constraint_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.constraint_update(constraint=instance, **validated_data)

    @extend_schema(
        operation_id="master_data_constraints_types",
        request=None,
        responses={200: ConstraintTypeSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def types(self, request):
        """Every constraint type with the JSON Schema its `rules` must satisfy."""
        return Response(ConstraintTypeSerializer(CONSTRAINT_TYPES.values(), many=True).data)


class PromptViewSet(ServiceBackedViewSet):
    queryset = Prompt.objects.select_related("owner")
    serializer_class = PromptSerializer
    filterset_class = PromptFilter
    search_fields = ["name", "description", "category"]
    ordering_fields = ["name", "category", "version", "created_at", "updated_at"]
    object_actions = {"render": "view"}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            queryset = queryset.prefetch_related("versions__created_by")
        return queryset

    def get_serializer_class(self):
        if self.action in ("retrieve", "create", "update", "partial_update"):
            return PromptDetailSerializer
        return PromptSerializer

    def create_object(self, validated_data):
        return services.prompt_create(owner=self.request.user, actor=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.prompt_update(prompt=instance, actor=self.request.user, **validated_data)

    @extend_schema(
        operation_id="master_data_prompts_categories",
        request=None,
        responses={200: CategoryCountSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def categories(self, request):
        """Distinct prompt categories (of the prompts you may see) with their counts."""
        rows = selectors.category_counts(self.get_queryset())
        return Response(CategoryCountSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="master_data_prompts_render",
        request=PromptRenderRequestSerializer,
        responses={200: PromptRenderSerializer},
    )
    @action(detail=True, methods=["post"])
    def render(self, request, *args, **kwargs):
        """Render the prompt (or one of its versions) with the given variables, in the sandbox."""
        prompt = self.get_object()
        data = PromptRenderRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        text, version = services.prompt_render(
            prompt=prompt,
            variables=data.validated_data["variables"],
            version=data.validated_data.get("version"),
        )
        return Response(PromptRenderSerializer({"text": text, "version": version}).data)


class ModelConfigViewSet(ServiceBackedViewSet):
    queryset = ModelConfig.objects.select_related("owner", "api_key_secret")
    serializer_class = ModelConfigSerializer
    filterset_class = ModelConfigFilter
    search_fields = ["name", "description", "model_name"]
    ordering_fields = ["name", "provider", "model_name", "created_at", "updated_at"]

    def create_object(self, validated_data):
        return services.model_config_create(
            owner=self.request.user, actor=self.request.user, **validated_data
        )

    def update_object(self, instance, validated_data):
        return services.model_config_update(model_config=instance, actor=self.request.user, **validated_data)

    @extend_schema(
        operation_id="master_data_models_providers",
        request=None,
        responses={200: ProviderSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def providers(self, request):
        """Supported providers and the fields each one requires."""
        return Response(ProviderSerializer(PROVIDERS.values(), many=True).data)


class SecretViewSet(ServiceBackedViewSet):
    queryset = Secret.objects.select_related("owner")
    serializer_class = SecretSerializer
    filterset_class = SecretFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at", "last_used_at"]

    def create_object(self, validated_data):
        return services.secret_create(owner=self.request.user, **validated_data)

    def update_object(self, instance, validated_data):
        return services.secret_update(secret=instance, **validated_data)


class MasterDataStatsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="master_data_stats", request=None, responses={200: MasterDataStatsSerializer})
    def get(self, request):
        """Counts of the master data you may see, per type, category and provider."""
        return Response(MasterDataStatsSerializer(selectors.masterdata_stats(user=request.user)).data)
