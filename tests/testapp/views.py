from rest_framework import serializers

from agentmesh.core.routers import ApiRouter
from agentmesh.core.serializers import OwnerField
from agentmesh.core.viewsets import OwnedModelViewSet

from .models import Widget


class WidgetSerializer(serializers.ModelSerializer):
    owner = OwnerField()

    class Meta:
        model = Widget
        fields = ["id", "name", "size", "category", "owner", "created_at", "updated_at"]


class WidgetViewSet(OwnedModelViewSet):
    queryset = Widget.objects.select_related("owner")
    serializer_class = WidgetSerializer
    filterset_fields = ["category"]
    search_fields = ["name"]
    ordering_fields = ["name", "size", "created_at"]
    object_actions = {"use_it": "use"}


router = ApiRouter()
router.register("widgets", WidgetViewSet, basename="widget")
