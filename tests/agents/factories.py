"""Agents, models and tools for tests, made through the services (so they are valid)."""

import itertools

from agents.services import agent_create
from masterdata.services import model_config_create
from tools import services as tool_services

_counter = itertools.count()


def make_model(owner, **fields):
    """An echo-provider model config (offline, deterministic)."""
    name = fields.pop("name", f"echo-{next(_counter)}")
    return model_config_create(owner=owner, actor=owner, name=name, provider="echo", **fields)


def make_agent(owner, **fields):
    fields.setdefault("name", f"agent-{next(_counter)}")
    if "model" not in fields:
        fields["model"] = make_model(owner)
    return agent_create(owner=owner, **fields)


def make_deployed_tool(owner, name=None, function="calculator"):
    """A built-in tool, validated and deployed."""
    tool = tool_services.tool_create(
        owner=owner, name=name or f"calc-{next(_counter)}", type="builtin", config={"function": function}
    )
    tool_services.tool_validate(tool=tool, actor=owner)
    return tool_services.tool_deploy(tool=tool, actor=owner)
