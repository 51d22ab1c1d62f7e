"""Cross-app operations. For now: the demo data `make run` seeds."""

from django.db import transaction

from masterdata.models import ModelConfig
from masterdata.services import model_config_create
from tools.models import Tool, ToolStatus
from tools.services import tool_create, tool_deploy, tool_validate

DEMO_TOOLS = [
    ("calculator", "Evaluate an arithmetic expression.", "calculator"),
    ("current_time", "The current date and time in a time zone.", "datetime_now"),
    ("json_query", "Query JSON data with a JMESPath expression.", "json_query"),
]


@transaction.atomic
def demo_seed(*, owner) -> dict[str, int]:
    """Give `owner` an offline model (the built-in echo provider) and deployed built-in tools.
    Creates only what is missing; returns how many rows it created."""
    created = {"models": 0, "tools": 0}
    if not ModelConfig.objects.filter(owner=owner, name="Echo (demo)").exists():
        model_config_create(
            owner=owner,
            actor=owner,
            name="Echo (demo)",
            provider="echo",
            description="The built-in deterministic demo provider: no network, no API key.",
        )
        created["models"] += 1
    for name, description, function in DEMO_TOOLS:
        tool = Tool.objects.filter(owner=owner, name=name).first()
        if tool is None:
            tool = tool_create(
                owner=owner,
                name=name,
                type="builtin",
                description=description,
                category="Demo",
                config={"function": function},
            )
            created["tools"] += 1
        if tool.status == ToolStatus.DRAFT:
            tool_validate(tool=tool, actor=owner)
            tool.refresh_from_db()
        if tool.status == ToolStatus.VALIDATED:
            tool_deploy(tool=tool, actor=owner)
    return created
