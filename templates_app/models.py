"""Templates: versioned, parameterised blueprints of agents, workflows and tools.

A version's body and parameters never change once written (a change is a new version).
Instantiating a version creates real resources through their own services; each one is
recorded as a TemplateInstance.
"""

from django.conf import settings
from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models


class TemplateKind(models.TextChoices):
    AGENT = "agent", "Agent"
    WORKFLOW = "workflow", "Workflow"
    TOOL = "tool", "Tool"
    BUNDLE = "bundle", "Bundle"


class Template(OwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=TemplateKind.choices, db_index=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    published = models.BooleanField(
        default=False, db_index=True, help_text="Listed in everyone's catalogue (set by an admin)."
    )
    archived = models.BooleanField(default=False, db_index=True)
    latest_version = models.ForeignKey(
        "TemplateVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="templates_template_unique_name_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(TimeStampedModel):
    """An immutable blueprint: `body` (resources) and `parameters` (a JSON Schema)."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    body = models.JSONField()
    parameters = models.JSONField(default=dict, blank=True)
    changelog = models.TextField(blank=True)
    checksum = models.CharField(max_length=64, help_text="sha256 of the canonical body and parameters.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="templates_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.template_id} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Template versions are immutable.")
        super().save(*args, **kwargs)


class TemplateInstance(TimeStampedModel):
    """Provenance of a resource created from a template version.

    It lives here, on the template side, rather than as a foreign key on Agent/Workflow/Tool:
    templates_app depends on those apps, never the other way round (not even in migrations).
    The resource is named by kind + id; `version` is nulled when the template is deleted, and
    the template's name and version number stay for the record.
    """

    version = models.ForeignKey(
        TemplateVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="instances"
    )
    template_name = models.CharField(max_length=100)
    version_number = models.PositiveIntegerField()
    resource_kind = models.CharField(max_length=20, db_index=True)
    resource_id = models.UUIDField(db_index=True)
    resource_name = models.CharField(max_length=100)
    local_key = models.CharField(max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.resource_kind} {self.resource_name} from {self.template_name} v{self.version_number}"


TemplateUserPermission, TemplateGroupPermission = object_permission_models(Template)
