from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer

from ..models import Constraint, ModelConfig, Prompt, PromptVersion, Secret, Skill
from ..services import MAX_SECRET_CHARS, VARIABLE_TYPES

TAGS_HELP = "Lower-case tags: letters, digits and _.+- (normalised on save)."


def tags_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=50), max_length=30, required=False, help_text=TAGS_HELP
    )


class SkillSerializer(StrictModelSerializer):
    owner = OwnerField()
    tags = tags_field()
    slug = serializers.SlugField(max_length=110, required=False, allow_blank=True)
    input_schema = serializers.JSONField(required=False, allow_null=True, help_text="JSON Schema of inputs.")
    output_schema = serializers.JSONField(
        required=False, allow_null=True, help_text="JSON Schema of outputs."
    )

    class Meta:
        model = Skill
        fields = [
            "id",
            "name",
            "slug",
            "category",
            "type",
            "description",
            "tags",
            "input_schema",
            "output_schema",
            "is_active",
            "owner",
            "created_at",
            "updated_at",
        ]


class SkillSearchResultSerializer(SkillSerializer):
    rank = serializers.FloatField(read_only=True, help_text="Relevance; higher is better.")
    # Plain string here: a second component carrying the skill-type enum would make its name ambiguous.
    type = serializers.CharField(read_only=True, help_text="The skill type.")

    class Meta(SkillSerializer.Meta):
        fields = [*SkillSerializer.Meta.fields, "rank"]


class CategoryCountSerializer(StrictSerializer):
    category = serializers.CharField()
    count = serializers.IntegerField()


class ConstraintSerializer(StrictModelSerializer):
    owner = OwnerField()
    rules = serializers.DictField(help_text="Validated against the JSON Schema of the constraint type.")

    class Meta:
        model = Constraint
        fields = [
            "id",
            "name",
            "description",
            "type",
            "rules",
            "is_active",
            "owner",
            "created_at",
            "updated_at",
        ]


class ConstraintTypeSerializer(StrictSerializer):
    type = serializers.CharField(source="name")
    label = serializers.CharField()
    description = serializers.CharField()
    schema = serializers.DictField(help_text="JSON Schema of `rules` for this type.")


class PromptVariableSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)
    type = serializers.ChoiceField(choices=list(VARIABLE_TYPES), required=False)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    required = serializers.BooleanField(required=False)
    default = serializers.JSONField(required=False, allow_null=True)


@extend_schema_field(PromptVariableSerializer(many=True))
class PromptVariablesField(serializers.ListField):
    """Shape-checked here, validated item by item in the service (which names `variables[i].name`)."""

    child = serializers.DictField()


class PromptVersionSerializer(StrictModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    variables = PromptVariableSerializer(many=True, read_only=True)

    class Meta:
        model = PromptVersion
        fields = ["version", "template", "variables", "created_by", "created_at"]


class PromptSerializer(StrictModelSerializer):
    owner = OwnerField()
    tags = tags_field()
    variables = PromptVariablesField(
        max_length=100,
        required=False,
        allow_null=True,
        help_text="Declared variables; when omitted, the variables the template reads are declared as "
        "required strings.",
    )

    class Meta:
        model = Prompt
        fields = [
            "id",
            "name",
            "description",
            "category",
            "tags",
            "template",
            "variables",
            "version",
            "is_active",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["version"]


class PromptDetailSerializer(PromptSerializer):
    versions = PromptVersionSerializer(many=True, read_only=True, help_text="Newest first.")

    class Meta(PromptSerializer.Meta):
        fields = [*PromptSerializer.Meta.fields, "versions"]


class PromptRenderRequestSerializer(StrictSerializer):
    variables = serializers.DictField(required=False, default=dict)
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the current version.")


class PromptRenderSerializer(StrictSerializer):
    text = serializers.CharField()
    version = serializers.IntegerField()


class SecretSerializer(StrictModelSerializer):
    """Write-only `value`; responses carry only the mask, the fingerprint and metadata."""

    owner = OwnerField()
    value = serializers.CharField(
        write_only=True,
        required=False,
        max_length=MAX_SECRET_CHARS,
        style={"input_type": "password"},
        help_text="The secret value; required on create, optional on update. Never returned.",
    )

    class Meta:
        model = Secret
        fields = [
            "id",
            "name",
            "description",
            "value",
            "mask",
            "fingerprint",
            "last_used_at",
            "last_used_for",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["mask", "fingerprint", "last_used_at", "last_used_for"]

    def validate(self, attrs):
        if self.instance is None and not attrs.get("value"):
            raise serializers.ValidationError({"value": ["This field is required."]}, code="required")
        return attrs


class ModelConfigSerializer(StrictModelSerializer):
    owner = OwnerField()
    api_key_secret = serializers.PrimaryKeyRelatedField(
        queryset=Secret.objects.all(),
        required=False,
        allow_null=True,
        error_messages={"does_not_exist": "No usable secret with this id."},
        help_text="Secret holding the API key; you must own it or have it shared with you for use.",
    )
    # A method field: a dotted source with a default is left out of PATCH answers (partial).
    api_key_secret_mask = serializers.SerializerMethodField(help_text="The key's mask; null without a key.")
    fallback = serializers.PrimaryKeyRelatedField(
        queryset=ModelConfig.objects.all(),
        required=False,
        allow_null=True,
        error_messages={"does_not_exist": "No usable model with this id."},
    )
    default_parameters = serializers.DictField(required=False, help_text="temperature, top_p, max_tokens …")
    input_price_per_million = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, required=False, coerce_to_string=False
    )
    output_price_per_million = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=0, required=False, coerce_to_string=False
    )

    class Meta:
        model = ModelConfig
        fields = [
            "id",
            "name",
            "description",
            "provider",
            "model_name",
            "base_url",
            "api_version",
            "api_key_secret",
            "api_key_secret_mask",
            "context_window",
            "default_parameters",
            "input_price_per_million",
            "output_price_per_million",
            "fallback",
            "is_active",
            "owner",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"context_window": {"min_value": 1}}

    def get_api_key_secret_mask(self, model_config) -> str | None:
        return model_config.api_key_secret.mask if model_config.api_key_secret_id else None


class ProviderSerializer(StrictSerializer):
    id = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    required_fields = serializers.ListField(child=serializers.CharField())
    optional_fields = serializers.ListField(child=serializers.CharField())
    default_base_url = serializers.CharField(allow_blank=True)


class CountsSerializer(StrictSerializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField()


class SkillStatsSerializer(CountsSerializer):
    by_category = serializers.DictField(child=serializers.IntegerField())
    by_type = serializers.DictField(child=serializers.IntegerField())


class ConstraintStatsSerializer(CountsSerializer):
    by_type = serializers.DictField(child=serializers.IntegerField())


class PromptStatsSerializer(CountsSerializer):
    by_category = serializers.DictField(child=serializers.IntegerField())


class ModelStatsSerializer(CountsSerializer):
    by_provider = serializers.DictField(child=serializers.IntegerField())


class SecretStatsSerializer(StrictSerializer):
    total = serializers.IntegerField()


class MasterDataStatsSerializer(StrictSerializer):
    skills = SkillStatsSerializer()
    constraints = ConstraintStatsSerializer()
    prompts = PromptStatsSerializer()
    models = ModelStatsSerializer()
    secrets = SecretStatsSerializer()
