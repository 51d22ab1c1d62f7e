import django_filters

from agentmesh.core.filters import FilterSet
from masterdata.filters import OwnerFilterSet

from .models import ExecutionStatus, Workflow, WorkflowExecution, WorkflowStatus


class WorkflowFilter(OwnerFilterSet):
    status = django_filters.ChoiceFilter(choices=WorkflowStatus.choices)

    class Meta:
        model = Workflow
        fields = ["status", "owner"]


class WorkflowExecutionFilter(FilterSet):
    workflow = django_filters.UUIDFilter(field_name="workflow_id")
    status = django_filters.ChoiceFilter(choices=ExecutionStatus.choices)
    version = django_filters.NumberFilter(field_name="version__version")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = WorkflowExecution
        fields = ["workflow", "status", "version", "since", "until"]
