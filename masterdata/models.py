"""Master data: skills, constraints, prompts (with immutable versions), LLM model configs, secrets."""

from django.conf import settings
from django.db import models

from agentmesh.core.models import OwnedModel, TimeStampedModel, object_permission_models

from .constraints import CONSTRAINT_TYPES


class SkillType(models.TextChoices):
    CAPABILITY = "capability", "Capability"
    KNOWLEDGE = "knowledge", "Knowledge"
    PROCEDURE = "procedure", "Procedure"
    INTEGRATION = "integration", "Integration"
    OTHER = "other", "Other"


class Skill(OwnedModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=110)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    type = models.CharField(max_length=20, choices=SkillType.choices, default=SkillType.CAPABILITY)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    input_schema = models.JSONField(null=True, blank=True, help_text="JSON Schema of the skill's inputs.")
    output_schema = models.JSONField(null=True, blank=True, help_text="JSON Schema of the skill's outputs.")
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="masterdata_skill_unique_name_per_owner"),
            models.UniqueConstraint(fields=["owner", "slug"], name="masterdata_skill_unique_slug_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class Constraint(OwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    type = models.CharField(
        max_length=30, choices=[(t.name, t.label) for t in CONSTRAINT_TYPES.values()], db_index=True
    )
    rules = models.JSONField(default=dict)
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="masterdata_constraint_unique_name_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class Prompt(OwnedModel):
    """A Jinja2 template (rendered in the sandbox). Every change of the text or the declared
    variables adds an immutable PromptVersion; `version` is the current number."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    template = models.TextField()
    variables = models.JSONField(
        default=list, blank=True, help_text='[{"name", "type", "description", "required", "default"}]'
    )
    version = models.PositiveIntegerField(default=1)
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="masterdata_prompt_unique_name_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name


class PromptVersion(TimeStampedModel):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    template = models.TextField()
    variables = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta(TimeStampedModel.Meta):
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "version"], name="masterdata_promptversion_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_id} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Prompt versions are immutable.")
        super().save(*args, **kwargs)


class Secret(OwnedModel):
    """A credential encrypted at rest. Only `masterdata.services.secret_reveal` decrypts it."""

    SENSITIVE_FIELDS = ("encrypted_value",)

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    encrypted_value = models.TextField(editable=False)
    fingerprint = models.CharField(max_length=40, editable=False)
    mask = models.CharField(max_length=20, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_for = models.CharField(max_length=200, blank=True, editable=False)

    class Meta(OwnedModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="masterdata_secret_unique_name_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.mask})"


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OLLAMA = "ollama", "Ollama"
    ECHO = "echo", "Echo (built-in, deterministic, offline)"


class ModelConfig(OwnedModel):
    """An LLM endpoint an agent can call: provider, model, where, with which key, at what price."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    provider = models.CharField(max_length=30, choices=Provider.choices, db_index=True)
    model_name = models.CharField(max_length=200, blank=True)
    base_url = models.URLField(max_length=500, blank=True)
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI API version.")
    api_key_secret = models.ForeignKey(
        Secret, on_delete=models.PROTECT, null=True, blank=True, related_name="model_configs"
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)
    default_parameters = models.JSONField(default=dict, blank=True)
    input_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    output_price_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    fallback = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="fallback_for"
    )
    is_active = models.BooleanField(default=True, db_index=True)

    class Meta(OwnedModel.Meta):
        verbose_name = "model config"
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="masterdata_modelconfig_unique_name_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}:{self.model_name})"


SkillUserPermission, SkillGroupPermission = object_permission_models(Skill)
ConstraintUserPermission, ConstraintGroupPermission = object_permission_models(Constraint)
PromptUserPermission, PromptGroupPermission = object_permission_models(Prompt)
SecretUserPermission, SecretGroupPermission = object_permission_models(Secret)
ModelConfigUserPermission, ModelConfigGroupPermission = object_permission_models(ModelConfig)
