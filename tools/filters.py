import django_filters

from agentmesh.core.filters import FilterSet
from masterdata.filters import TagsFilterSet

from .models import CallerType, ExecutionStatus, Tool, ToolExecution, ToolStatus


class ToolFilter(TagsFilterSet):
    category = django_filters.CharFilter(lookup_expr="iexact")
    type = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=ToolStatus.choices)

    class Meta:
        model = Tool
        fields = ["category", "type", "status", "owner", "tags"]


class ToolExecutionFilter(FilterSet):
    tool = django_filters.UUIDFilter(field_name="tool_id")
    status = django_filters.ChoiceFilter(choices=ExecutionStatus.choices)
    caller_type = django_filters.ChoiceFilter(choices=CallerType.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ToolExecution
        fields = ["tool", "status", "caller_type", "error_kind", "is_test", "since", "until"]
