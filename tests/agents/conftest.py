import pytest

from agents.models import Agent, AgentStatus, AgentVersion
from masterdata.constraints import effective_limits
from masterdata.services import model_config_create
from tests.fake_llm import FakeOpenAI
from tools import services as tool_services


@pytest.fixture(scope="module")
def fake_openai():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def llm(fake_openai):
    """The fake's script, emptied for each test."""
    fake_openai.reset()
    return fake_openai


@pytest.fixture
def fake_model(developer, fake_openai):
    return model_config_create(
        owner=developer,
        actor=developer,
        name="fake",
        provider="openai_compatible",
        model_name="fake-1",
        base_url=fake_openai.url,
        input_price_per_million="1000",
        output_price_per_million="2000",
    )


@pytest.fixture
def builtin_tool(developer):
    def make(function="calculator", name=None):
        tool = tool_services.tool_create(
            owner=developer, name=name or function, type="builtin", config={"function": function}
        )
        tool_services.tool_validate(tool=tool, actor=developer)
        return tool_services.tool_deploy(tool=tool, actor=developer)

    return make


@pytest.fixture
def deployed_agent(developer, fake_model):
    """An agent with a deployed version snapshot built here (deploy itself is tested in test_deploy.py)."""

    def make(*, tools=(), limits=None, system_prompt="You are terse.", response_format=None, memory=None,
             model=None, name="helper", owner=None, prompt_variables=None):  # fmt: skip
        owner = owner or developer
        model = model or fake_model
        agent = Agent.objects.create(owner=owner, name=name, model=model, system_prompt=system_prompt)
        agent.tools.set(tools)
        snapshot = {
            "agent": {"id": str(agent.pk), "name": name},
            "model_config_id": str(model.pk),
            "system_prompt": system_prompt,
            "prompt": None,
            "prompt_variables": prompt_variables or {},
            "tools": [
                {
                    "id": str(t.pk),
                    "name": t.name,
                    "version": t.version,
                    "description": t.description,
                    "parameters_schema": t.parameters_schema,
                }
                for t in tools
            ],
            "skills": [],
            "limits": {**effective_limits([]), **(limits or {})},
            "memory": memory or {"max_messages": None, "max_tokens": None},
            "response_format": response_format or {"type": "text"},
            "parameters": {},
        }
        version = AgentVersion.objects.create(agent=agent, version=1, snapshot=snapshot)
        agent.deployed_version = version
        agent.status = AgentStatus.DEPLOYED
        agent.save()
        return agent

    return make
