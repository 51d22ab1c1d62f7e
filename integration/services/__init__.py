"""Cross-app operations. For now: the demo data `make run` seeds."""

from django.db import transaction

from agents.models import Agent, AgentStatus
from agents.services import agent_create, agent_deploy
from masterdata.models import ModelConfig
from masterdata.services import model_config_create
from tools.models import Tool, ToolStatus
from tools.services import tool_create, tool_deploy, tool_validate

DEMO_AGENT = "echo-assistant"
DEMO_TOOLS = [
    ("calculator", "Evaluate an arithmetic expression.", "calculator"),
    ("current_time", "The current date and time in a time zone.", "datetime_now"),
    ("json_query", "Query JSON data with a JMESPath expression.", "json_query"),
]


@transaction.atomic
def demo_seed(*, owner) -> dict[str, int]:
    """Give `owner` an offline model (the built-in echo provider), deployed built-in tools and
    a deployed agent using them. Creates only what is missing; returns how many it created."""
    created = {"models": 0, "tools": 0, "agents": 0}
    model = ModelConfig.objects.filter(owner=owner, name="Echo (demo)").first()
    if model is None:
        model = model_config_create(
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
    agent = Agent.objects.filter(owner=owner, name=DEMO_AGENT).first()
    if agent is None:
        agent = agent_create(
            owner=owner,
            name=DEMO_AGENT,
            model=model,
            description='Demo agent on the echo provider. Say `call calculator {"expression": "6*7"}`.',
            system_prompt="You are the Agent Mesh demo assistant.",
            tools=list(Tool.objects.filter(owner=owner, category="Demo")),
        )
        created["agents"] += 1
    if agent.status != AgentStatus.DEPLOYED:
        agent_deploy(agent=agent, actor=owner)
    return created
