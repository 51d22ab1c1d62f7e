from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer
from agents.api.serializers import ErrorItemSerializer
from masterdata.api.serializers import tags_field

from ..models import Template, TemplateKind, TemplateVersion

BODY_HELP = (
    '{"resources": [{"key", "kind": "tool"|"agent"|"workflow", "spec": <the create payload>}]}; '
    '"{{ params.name }}" inserts a parameter, {"$ref": "model", "name": "..."} references by name, '
    '{"$ref": "local", "key": "..."} another resource of the template.'
)
PARAMETERS_HELP = (
    'JSON Schema of the parameters: {"type": "object", "properties": {name: {type, default, '
    'description, examples}}, "required": [...]}; each parameter has a default or examples.'
)


class TemplateVersionSerializer(StrictModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    body = serializers.JSONField(read_only=True, help_text=BODY_HELP)
    parameters = serializers.JSONField(read_only=True, help_text=PARAMETERS_HELP)

    class Meta:
        model = TemplateVersion
        fields = ["id", "number", "body", "parameters", "changelog", "checksum", "created_by", "created_at"]
        read_only_fields = fields


class TemplateSerializer(StrictModelSerializer):
    owner = OwnerField()
    tags = tags_field()
    kind = serializers.ChoiceField(choices=TemplateKind.choices, help_text="Fixed once created.")
    published = serializers.BooleanField(read_only=True, help_text="Set by an admin.")
    body = serializers.JSONField(write_only=True, required=False, help_text=BODY_HELP)
    parameters = serializers.JSONField(write_only=True, required=False, help_text=PARAMETERS_HELP)
    changelog = serializers.CharField(
        write_only=True, required=False, allow_blank=True, help_text="Of the version a changed body makes."
    )
    latest_version = TemplateVersionSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Template
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "category",
            "tags",
            "published",
            "archived",
            "body",
            "parameters",
            "changelog",
            "latest_version",
            "owner",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        if self.instance is None and "body" not in attrs:
            raise serializers.ValidationError({"body": ["This field is required."]})
        return attrs


class TemplateListSerializer(TemplateSerializer):
    latest_version = serializers.IntegerField(
        source="latest_version.number", read_only=True, allow_null=True, help_text="Its number."
    )


class TemplateVersionCreateSerializer(StrictSerializer):
    body = serializers.JSONField(help_text=BODY_HELP)
    parameters = serializers.JSONField(required=False, help_text=PARAMETERS_HELP)
    changelog = serializers.CharField(required=False, allow_blank=True)


class InstantiateSerializer(StrictSerializer):
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")
    params = serializers.DictField(required=False, help_text="Parameter values (defaults fill the rest).")
    names = serializers.DictField(
        child=serializers.CharField(max_length=100), required=False, help_text="Resource key -> name."
    )
    deploy = serializers.BooleanField(default=False, help_text="Deploy the tools and agents (all or none).")


class CreatedResourceSerializer(StrictSerializer):
    key = serializers.CharField()
    kind = serializers.CharField()
    id = serializers.UUIDField()
    name = serializers.CharField()


class InstantiateResultSerializer(StrictSerializer):
    template = serializers.UUIDField()
    version = serializers.IntegerField()
    resources = CreatedResourceSerializer(many=True)


class ReferenceSerializer(StrictSerializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    id = serializers.UUIDField()


class MissingReferenceSerializer(StrictSerializer):
    kind = serializers.CharField()
    name = serializers.CharField()
    field = serializers.CharField()


class ResourceCheckSerializer(StrictSerializer):
    key = serializers.CharField()
    kind = serializers.CharField()
    ok = serializers.BooleanField()
    deferred = serializers.BooleanField(
        help_text="It references resources of this template: those fields are checked at instantiate."
    )
    errors = ErrorItemSerializer(many=True)


class RenderedResourceSerializer(StrictSerializer):
    key = serializers.CharField()
    kind = serializers.CharField()
    spec = serializers.JSONField()


class PreviewSerializer(StrictSerializer):
    version = serializers.IntegerField()
    params = serializers.DictField()
    resources = RenderedResourceSerializer(many=True)
    references = ReferenceSerializer(many=True)
    missing = MissingReferenceSerializer(many=True)
    validation = ResourceCheckSerializer(many=True)
    valid = serializers.BooleanField()


class ExportMetadataSerializer(StrictSerializer):
    name = serializers.CharField()
    description = serializers.CharField(required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=TemplateKind.choices)
    category = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(), required=False)


class ExportVersionSerializer(StrictSerializer):
    number = serializers.IntegerField(min_value=1)
    changelog = serializers.CharField(required=False, allow_blank=True)
    parameters = serializers.JSONField(required=False)
    body = serializers.JSONField()
    checksum = serializers.CharField(required=False)


class TemplateDocumentSerializer(StrictSerializer):
    """The exchange format (`apiVersion: agentmesh/v1`, `kind: Template`)."""

    apiVersion = serializers.CharField(help_text="agentmesh/v1")  # noqa: N815
    kind = serializers.CharField(help_text="Template")
    metadata = ExportMetadataSerializer()
    versions = ExportVersionSerializer(many=True)


class ImportFileSerializer(StrictSerializer):
    file = serializers.FileField(help_text="A YAML or JSON document in the exchange format.")


class FromResourceSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    category = serializers.CharField(required=False, allow_blank=True, max_length=100)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)


class ParameterizeSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z_]\w{0,63}$", help_text="The parameter's name.")
    path = serializers.CharField(
        help_text="Dotted path in the definition; nodes by id: nodes.<id>.config.x, inputs.properties.x.default."
    )
    description = serializers.CharField(required=False, allow_blank=True)


class WorkflowTemplateSerializer(FromResourceSerializer):
    version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the current one.")
    parameterize = ParameterizeSerializer(many=True, required=False)
    include = serializers.ListField(
        child=serializers.ChoiceField(choices=["agents", "tools"]),
        required=False,
        help_text="Put these in a bundle instead of referencing them by name.",
    )


class AgentTemplateSerializer(FromResourceSerializer):
    include = serializers.ListField(
        child=serializers.ChoiceField(choices=["tools"]),
        required=False,
        help_text="Put the tools in a bundle instead of referencing them by name.",
    )
