from django.db import models

from agentmesh.core.models import OwnedModel, object_permission_models


class Widget(OwnedModel):
    name = models.CharField(max_length=100)
    size = models.PositiveIntegerField(default=1)
    category = models.CharField(max_length=50, blank=True)

    def __str__(self) -> str:
        return self.name


class WidgetPart(OwnedModel):
    widget = models.ForeignKey(Widget, on_delete=models.PROTECT, related_name="parts")
    label = models.CharField(max_length=50)


WidgetUserPermission, WidgetGroupPermission = object_permission_models(Widget)
WidgetPartUserPermission, WidgetPartGroupPermission = object_permission_models(WidgetPart)
