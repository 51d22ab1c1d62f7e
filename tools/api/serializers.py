from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agentmesh.core.serializers import OwnerField, StrictModelSerializer, StrictSerializer
from masterdata.api.serializers import tags_field

from ..models import Tool, ToolExecution
from ..services import TOOL_FIELDS
from ..testing import TEST_CASE_SCHEMA


# --- The documented shape of tool test cases (checked at runtime by TEST_CASE_SCHEMA) ---------
class ToolTestExpectSerializer(StrictSerializer):
    """What a test case expects of the execution; every key is optional."""

    status = serializers.CharField(
        required=False,
        help_text="Expected execution status (default `succeeded`): "
        + ", ".join(TEST_CASE_SCHEMA["properties"]["expect"]["properties"]["status"]["enum"])
        + ".",
    )
    output_schema = serializers.BooleanField(
        required=False, help_text="The output satisfies the tool's output schema."
    )
    equals = serializers.DictField(
        required=False, help_text='{JSONPath: value} the output must match exactly, e.g. {"$.sum": 3}.'
    )
    contains = serializers.DictField(
        required=False,
        help_text="{JSONPath: value}: a substring of a string, an item of a list, or keys of an object.",
    )
    max_duration_ms = serializers.FloatField(required=False, min_value=0)


class ToolTestCaseSerializer(StrictSerializer):
    name = serializers.CharField(required=False, max_length=100)
    arguments = serializers.DictField(help_text="The tool's arguments.")
    expect = ToolTestExpectSerializer(required=False)


@extend_schema_field(ToolTestExpectSerializer)
class ExpectField(serializers.DictField):
    """A test case's expectations (validated by the tool test service)."""


@extend_schema_field(ToolTestCaseSerializer(many=True))
class TestCasesField(serializers.JSONField):
    """Stored test cases (validated by the tool service)."""


@extend_schema_field(ToolTestCaseSerializer(many=True))
class TestCaseListField(serializers.ListField):
    """Cases to run (validated by the tool test service)."""


class ToolSerializer(StrictModelSerializer):
    owner = OwnerField()
    tags = tags_field()
    type = serializers.CharField(max_length=30, help_text="One of GET /api/v1/tools/types.")
    parameters_schema = serializers.JSONField(
        required=False, help_text="JSON Schema of the arguments (an object schema)."
    )
    output_schema = serializers.JSONField(required=False, allow_null=True)
    config = serializers.JSONField(required=False, help_text="Per type; see GET /api/v1/tools/types.")
    test_cases = TestCasesField(
        required=False,
        help_text="Cases `POST /tools/{id}/test` runs when given none: [{name, arguments, expect}].",
    )

    class Meta:
        model = Tool
        fields = [
            "id",
            "slug",
            *TOOL_FIELDS,
            "version",
            "status",
            "validated_at",
            "validation_report",
            "deployed_at",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["slug", "version", "status", "validated_at", "validation_report", "deployed_at"]


class ToolExecutionSerializer(StrictModelSerializer):
    tool = serializers.UUIDField(
        source="tool_id", read_only=True, allow_null=True, help_text="Null once the tool is deleted."
    )
    tool_name = serializers.CharField(read_only=True, help_text="The tool's name when it ran.")
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ToolExecution
        fields = [
            "id",
            "tool",
            "tool_name",
            "tool_version",
            "user",
            "caller_type",
            "caller_ref",
            "arguments",
            "status",
            "result",
            "metadata",
            "error",
            "error_kind",
            "attempt",
            "started_at",
            "finished_at",
            "duration_ms",
            "is_test",
            "trace_id",
            "created_at",
        ]
        read_only_fields = fields


class ExecuteRequestSerializer(StrictSerializer):
    arguments = serializers.DictField(
        required=False, default=dict, help_text="Checked against the tool's schema."
    )


class TestRequestSerializer(StrictSerializer):
    arguments = serializers.DictField(required=False, help_text="Run one case with these arguments…")
    expect = ExpectField(required=False, help_text="…and these expectations.")
    cases = TestCaseListField(
        child=serializers.DictField(), required=False, max_length=50, help_text="Or several cases."
    )

    def validate(self, attrs):
        if "cases" in attrs and "arguments" in attrs:
            raise serializers.ValidationError({"cases": ["Give either cases or arguments, not both."]})
        return attrs


class TestCaseResultSerializer(StrictSerializer):
    name = serializers.CharField()
    passed = serializers.BooleanField()
    status = serializers.CharField(allow_null=True)
    execution_id = serializers.UUIDField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    failures = serializers.ListField(child=serializers.CharField())


class TestReportSerializer(StrictSerializer):
    passed = serializers.BooleanField()
    total = serializers.IntegerField()
    failed = serializers.IntegerField()
    cases = TestCaseResultSerializer(many=True)


class CheckSerializer(StrictSerializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    message = serializers.CharField(allow_blank=True)


class ValidationReportSerializer(StrictSerializer):
    valid = serializers.BooleanField()
    status = serializers.CharField()
    version = serializers.IntegerField()
    checks = CheckSerializer(many=True)


class ToolTypeSerializer(StrictSerializer):
    type = serializers.CharField()
    label = serializers.CharField()
    description = serializers.CharField()
    config_schema = serializers.JSONField()


class DayCountSerializer(StrictSerializer):
    day = serializers.DateField()
    calls = serializers.IntegerField()
    succeeded = serializers.IntegerField()


class PercentilesSerializer(StrictSerializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class ToolStatsSerializer(StrictSerializer):
    tool_id = serializers.UUIDField()
    days = serializers.IntegerField()
    calls = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    timed_out = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    duration_ms = PercentilesSerializer()
    errors_by_kind = serializers.DictField(child=serializers.IntegerField())
    per_day = DayCountSerializer(many=True)


class OpenAPIImportSerializer(StrictSerializer):
    document = serializers.JSONField(
        required=False, help_text="The OpenAPI 3 document: a JSON object, or JSON/YAML text."
    )
    url = serializers.CharField(
        required=False, max_length=2000, help_text="…or where to fetch it (through the SSRF guard)."
    )
    base_url = serializers.CharField(
        required=False, max_length=2000, help_text="Overrides the document's servers[0].url."
    )
    auth = serializers.DictField(
        required=False, help_text="http auth config for every tool (see GET /types)."
    )
    category = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    operations = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="operationIds to import (default all).",
    )
    name_prefix = serializers.CharField(required=False, allow_blank=True, max_length=48, default="")

    def validate(self, attrs):
        if ("document" in attrs) == ("url" in attrs):
            raise serializers.ValidationError({"document": ["Give either document or url."]})
        return attrs


class MCPImportSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2000, help_text="Streamable HTTP endpoint of the MCP server.")
    headers_secret_id = serializers.UUIDField(required=False, allow_null=True)
    names = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Server tools to import (default all).",
    )
    category = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
