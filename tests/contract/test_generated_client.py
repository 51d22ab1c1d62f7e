"""A Python client generated from the served schema with openapi-python-client imports as
generated and drives a real flow against a live server."""

import importlib
import os
import pkgutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from agentmesh.accounts.models import Role

PACKAGE = "agentmesh_contract_client"
PASSWORD = "s3cure-Passw0rd!"


@pytest.fixture
def generated_client(live_server_url, tmp_path):
    schema = httpx.get(f"{live_server_url}/api/schema/?format=json", timeout=30)
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_bytes(schema.content)
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(tmp_path / "schema.json"),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / PACKAGE),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # every operation was generated
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_generated_client_imports_and_drives_a_real_flow(generated_client, live_server_url, make_user):
    package = generated_client
    modules = [m.name for m in pkgutil.walk_packages(package.__path__, PACKAGE + ".")]
    for name in modules:
        importlib.import_module(name)  # as generated: no patching
    assert len(modules) > 150

    def api(name):
        return importlib.import_module(f"{PACKAGE}.api.{name}")

    def model(name):
        return getattr(importlib.import_module(f"{PACKAGE}.models"), name)

    user = make_user(Role.DEVELOPER, password=PASSWORD)
    anonymous = package.Client(base_url=live_server_url, raise_on_unexpected_status=True)

    # login
    tokens = api("auth.auth_login").sync(
        client=anonymous, body=model("LoginRequest")(username=user.username, password=PASSWORD)
    )
    assert tokens.user.username == user.username
    client = package.AuthenticatedClient(
        base_url=live_server_url, token=tokens.access, raise_on_unexpected_status=True
    )
    failed = api("auth.auth_login").sync_detailed(
        client=anonymous, body=model("LoginRequest")(username=user.username, password="wrong")
    )
    assert failed.status_code == 401 and failed.parsed.errors[0].code  # the typed Problem shape

    # a built-in tool: create, validate, deploy, execute with nested arguments
    tool = api("tools.tools_create").sync(
        client=client,
        body=model("ToolRequest").from_dict(
            {"name": "query", "type": "builtin", "config": {"function": "json_query"}}
        ),
    )
    assert api("tools.tools_validate").sync(tool.id, client=client).valid
    assert api("tools.tools_deploy").sync(tool.id, client=client).to_dict()["status"] == "deployed"
    arguments = {
        "data": {"orders": [{"id": 1, "items": [{"sku": "a"}, {"sku": "b"}]}]},
        "expression": "orders[0].items[1].sku",
    }
    execution = api("tools.tools_execute").sync(
        tool.id, client=client, body=model("ExecuteRequestRequest").from_dict({"arguments": arguments})
    )
    assert execution.to_dict()["status"] == "succeeded", execution.to_dict()
    assert execution.to_dict()["result"] == {"result": "b"}
    assert execution.to_dict()["arguments"] == arguments  # sent as nested JSON, not form fields

    # an agent on the built-in echo provider: create, deploy, interact
    model_config = api("master_data.master_data_models_create").sync(
        client=client, body=model("ModelConfigRequest").from_dict({"name": "echo", "provider": "echo"})
    )
    assert model_config.api_key_secret_mask is None
    agent = api("agents.agents_create").sync(
        client=client,
        body=model("AgentRequest").from_dict(
            {"name": "helper", "model": str(model_config.id), "tools": [str(tool.id)]}
        ),
    )
    deployed = api("agents.agents_deploy").sync(agent.id, client=client)
    assert deployed.version == 1, deployed.to_dict()
    result = api("agents.agents_interact").sync(
        agent.id, client=client, body=model("InteractRequestRequest").from_dict({"input": "hello"})
    )
    assert result.to_dict()["status"] == "succeeded", result.to_dict()
    assert "hello" in result.output

    # a workflow: create and execute (sync)
    definition = {
        "nodes": [{"id": "double", "type": "transform", "config": {"template": "{{ inputs.n * 2 }}"}}],
        "edges": [],
        "outputs": {"n": "{{ steps.double.output }}"},
    }
    workflow = api("workflows.workflows_create").sync(
        client=client, body=model("WorkflowRequest").from_dict({"name": "double", "definition": definition})
    )
    run = api("workflows.workflows_execute").sync(
        workflow.id,
        client=client,
        body=model("WorkflowExecuteRequestRequest").from_dict({"inputs": {"n": 21}, "mode": "sync"}),
        idempotency_key=str(uuid.uuid4()),
    )
    assert run.to_dict()["status"] == "succeeded", run.to_dict()
    assert run.to_dict()["outputs"] == {"n": 42}

    # events as an array
    events = [
        model("EventInRequest").from_dict({"type": f"client.test{i}", "message": "hi"}) for i in range(2)
    ]
    batch = api("observability.observability_events_create").sync(client=client, body=events)
    assert batch.created == 2 and batch.failed == 0
    one = api("observability.observability_events_create").sync(
        client=client, body=model("EventInRequest").from_dict({"type": "client.single"})
    )
    assert one.type_ == "client.single"
