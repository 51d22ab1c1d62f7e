import django_filters

from agentmesh.core.filters import FilterSet
from masterdata.filters import OwnerFilterSet

from .models import Agent, AgentRun, AgentStatus, RunStatus, StopReason


class AgentFilter(OwnerFilterSet):
    status = django_filters.ChoiceFilter(choices=AgentStatus.choices)
    model = django_filters.UUIDFilter(field_name="model_id", help_text="Model config id.")

    class Meta:
        model = Agent
        fields = ["status", "model", "owner"]


class AgentRunFilter(FilterSet):
    agent = django_filters.UUIDFilter(field_name="agent_id")
    conversation = django_filters.UUIDFilter(field_name="conversation_id")
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    stop_reason = django_filters.ChoiceFilter(choices=StopReason.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AgentRun
        fields = ["agent", "conversation", "status", "stop_reason", "since", "until"]
