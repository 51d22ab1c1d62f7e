from datetime import date

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from agentmesh.core.routers import ApiRouter
from agentmesh.core.schema import deprecated, deprecated_field
from agentmesh.core.serializers import OwnerField
from agentmesh.core.viewsets import OwnedModelViewSet

from .models import Widget


class WidgetSerializer(serializers.ModelSerializer):
    owner = OwnerField()

    class Meta:
        model = Widget
        fields = ["id", "name", "size", "category", "owner", "created_at", "updated_at"]


class LegacySizeSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    old_size = deprecated_field(
        serializers.IntegerField(source="size", help_text="Same as `size`."), sunset=date(2099, 1, 1)
    )


class WidgetViewSet(OwnedModelViewSet):
    queryset = Widget.objects.select_related("owner")
    serializer_class = WidgetSerializer
    filterset_fields = ["category"]
    search_fields = ["name"]
    ordering_fields = ["name", "size", "created_at"]
    object_actions = {"use_it": "use"}

    @deprecated(since=date(2026, 1, 1), sunset=date(2099, 1, 1), link="https://example.com/migrate")
    @extend_schema(responses={200: LegacySizeSerializer})
    @action(detail=True, methods=["get"], url_path="legacy-size")
    def legacy_size(self, request, *args, **kwargs):
        """The widget's size under its old name (kept for old clients)."""
        return Response(LegacySizeSerializer(self.get_object()).data)


router = ApiRouter()
router.register("widgets", WidgetViewSet, basename="widget")
