"""Node types that call out (agent, tool, llm) and the `workflow` tool type, with the offline
echo provider and built-in tools (real code paths, no fakes)."""

import pytest

from agents.models import AgentRun
from agents.services import agent_deploy
from observability.models import Span
from tests.agents.factories import make_agent, make_deployed_tool, make_model
from tests.workflows.conftest import linear, steps_of, transform
from tools import services as tool_services
from tools.models import ToolExecution
from workflows import services
from workflows.models import ExecutionStatus, WorkflowExecution

pytestmark = pytest.mark.django_db


def test_tool_node_runs_a_deployed_tool_with_rendered_arguments(make_workflow, engine, developer):
    tool = make_deployed_tool(developer, function="calculator")
    workflow = make_workflow(
        linear(
            {
                "id": "calc",
                "type": "tool",
                "config": {"tool_id": str(tool.pk), "arguments": {"expression": "{{ inputs.a }} * 7"}},
            },
            outputs={"r": "{{ steps.calc.output.result }}"},
        )
    )
    execution = engine.execute(workflow, {"a": 6})
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.outputs == {"r": 42}
    call = ToolExecution.objects.get(tool=tool)
    step = steps_of(execution)["calc"]
    assert call.caller_type == "workflow_step" and call.caller_ref == str(step.pk)
    assert call.trace_id == execution.trace_id  # the tool's span is in the run's trace
    tool_span = Span.objects.get(trace_id=execution.trace_id, kind="tool")
    assert Span.objects.get(span_id=tool_span.parent_span_id).kind == "step"


def test_tool_node_sends_the_step_attempts_idempotency_key_to_an_http_write(
    make_workflow, engine, developer, fake_api
):
    tool = tool_services.tool_create(
        owner=developer,
        name="post_echo",
        type="http",
        config={"method": "POST", "url": fake_api.url + "/echo"},
    )
    tool_services.tool_validate(tool=tool, actor=developer)
    tool = tool_services.tool_deploy(tool=tool, actor=developer)
    execution = engine.execute(
        make_workflow(linear({"id": "post", "type": "tool", "config": {"tool_id": str(tool.pk)}}))
    )
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    step = steps_of(execution)["post"]
    assert step.idempotency_key
    assert fake_api.last()["headers"]["idempotency-key"] == step.idempotency_key


def test_tool_node_with_invalid_arguments_fails_without_retry(make_workflow, engine, developer):
    tool = make_deployed_tool(developer, function="calculator")
    node = {
        "id": "calc",
        "type": "tool",
        "config": {"tool_id": str(tool.pk), "arguments": {"expr": "1"}},
        "retry": {"max_attempts": 3},
    }
    execution = engine.execute(make_workflow(linear(node)))
    assert execution.status == ExecutionStatus.FAILED
    step = execution.steps.get()
    assert step.error_kind == "invalid_arguments" and "arguments" in step.error


def test_tool_node_does_its_side_effect_once_per_attempt(make_workflow, engine, developer):
    """A step re-run after its worker died finds the call its attempt already made."""
    from workflows.engine.nodes import StepContext, registry

    tool = make_deployed_tool(developer, function="calculator")
    workflow = make_workflow(
        linear(
            {
                "id": "calc",
                "type": "tool",
                "config": {"tool_id": str(tool.pk), "arguments": {"expression": "2+2"}},
            }
        )
    )
    execution = engine.execute(workflow)
    step = execution.steps.get()
    assert ToolExecution.objects.filter(tool=tool).count() == 1
    # The same attempt run again (as after a lost worker): the recorded call answers.
    ctx = StepContext(
        execution=execution,
        step=step,
        node=workflow.definition["nodes"][0],
        variables={"inputs": {}, "steps": {}},
        timeout=10,
    )
    result = registry.get("tool").run(ctx)
    assert result.output == {"result": 4}
    assert ToolExecution.objects.filter(tool=tool).count() == 1


def test_llm_node_calls_the_model_and_counts_usage(make_workflow, engine, developer):
    model = make_model(developer)
    workflow = make_workflow(
        linear(
            {
                "id": "ask",
                "type": "llm",
                "config": {
                    "model_id": str(model.pk),
                    "prompt": "Hello {{ inputs.name }}",
                    "system": "Be brief.",
                },
            },
            outputs={"text": "{{ steps.ask.output.text }}"},
        )
    )
    execution = engine.execute(workflow, {"name": "Ada"})
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.outputs == {"text": "Echo: Hello Ada"}
    step = steps_of(execution)["ask"]
    assert step.input_tokens > 0 and step.output_tokens > 0
    assert execution.input_tokens == step.input_tokens and execution.output_tokens == step.output_tokens
    assert Span.objects.filter(trace_id=execution.trace_id, kind="llm").exists()


def test_agent_node_runs_the_deployed_agent_once_per_attempt(make_workflow, engine, developer):
    agent = make_agent(developer, system_prompt="You echo.")
    version, checks = agent_deploy(agent=agent, actor=developer)
    assert version is not None, checks
    workflow = make_workflow(
        linear(
            {
                "id": "ask",
                "type": "agent",
                "config": {"agent_id": str(agent.pk), "input": "summarize: {{ inputs.text }}"},
            },
            outputs={"answer": "{{ steps.ask.output.output }}"},
        )
    )
    execution = engine.execute(workflow, {"text": "Workflows run durably. They retry."})
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.outputs == {"answer": "Workflows run durably."}
    run = AgentRun.objects.get(agent=agent)
    step = steps_of(execution)["ask"]
    assert run.idempotency_key == step.idempotency_key and step.output["run_id"] == str(run.pk)
    assert execution.input_tokens == run.input_tokens > 0


def test_agent_node_fails_cleanly_when_the_agent_is_not_deployed(make_workflow, engine, developer):
    agent = make_agent(developer)
    workflow = make_workflow(
        linear({"id": "ask", "type": "agent", "config": {"agent_id": str(agent.pk), "input": "hi"}})
    )
    execution = engine.execute(workflow)
    assert execution.status == ExecutionStatus.FAILED and "not deployed" in execution.error


def test_map_over_a_tool(make_workflow, engine, developer):
    tool = make_deployed_tool(developer, function="calculator")
    workflow = make_workflow(
        {
            "nodes": [
                {
                    "id": "each",
                    "type": "map",
                    "config": {
                        "items": "{{ inputs.xs }}",
                        "node": {
                            "type": "tool",
                            "config": {
                                "tool_id": str(tool.pk),
                                "arguments": {"expression": "{{ item }} ** 2"},
                            },
                        },
                    },
                },
                transform("sum", "{{ steps.each.output | map(attribute='result') | sum }}"),
            ],
            "edges": [{"source": "each", "target": "sum"}],
            "outputs": {"sum": "{{ steps.sum.output }}"},
        }
    )
    execution = engine.execute(workflow, {"xs": [1, 2, 3]})
    assert execution.outputs == {"sum": 14}
    refs = set(ToolExecution.objects.filter(tool=tool).values_list("caller_ref", flat=True))
    step = steps_of(execution)["each"]
    assert refs == {f"{step.pk}:{i}" for i in range(3)}


@pytest.mark.django_db(transaction=True)
def test_workflow_tool_type_runs_the_workflow(make_workflow, developer):
    workflow = make_workflow(
        linear(
            transform("a", "{{ inputs.x + 1 }}"),
            inputs={"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
            outputs={"y": "{{ steps.a.output }}"},
        )
    )
    tool = tool_services.tool_create(
        owner=developer, name="wf_tool", type="workflow", config={"workflow_id": str(workflow.pk)}
    )
    assert tool.parameters_schema["required"] == ["x"]  # the workflow's input schema
    tool_services.tool_validate(tool=tool, actor=developer)
    tool = tool_services.tool_deploy(tool=tool, actor=developer)
    with pytest.raises(tool_services.ToolArgumentsInvalid):
        tool_services.tool_execute(tool=tool, arguments={"x": "one"}, actor=developer)
    call = tool_services.tool_execute(tool=tool, arguments={"x": 41}, actor=developer)
    assert call.status == "succeeded", call.error
    assert call.result == {"y": 42}
    execution = WorkflowExecution.objects.get(pk=call.metadata["workflow_execution_id"])
    assert execution.status == ExecutionStatus.SUCCEEDED and execution.user == developer


def test_workflow_tool_type_refuses_a_workflow_the_owner_may_not_use(
    developer, other_developer, make_workflow
):
    workflow = make_workflow(linear(transform("a", 1)), owner=other_developer)
    with pytest.raises(tool_services.ServiceValidationError) as info:
        tool_services.tool_create(
            owner=developer, name="wf_tool", type="workflow", config={"workflow_id": str(workflow.pk)}
        )
    assert "config.workflow_id" in info.value.detail


def _workflow_tool(owner, workflow, name):
    tool = tool_services.tool_create(
        owner=owner, name=name, type="workflow", config={"workflow_id": str(workflow.pk)}
    )
    tool_services.tool_validate(tool=tool, actor=owner)
    return tool_services.tool_deploy(tool=tool, actor=owner)


def _agent_with(owner, tool):
    agent = make_agent(owner, tools=[tool])
    version, checks = agent_deploy(agent=agent, actor=owner)
    assert version is not None, checks
    return agent


@pytest.mark.django_db(transaction=True)
def test_an_agent_in_a_workflow_runs_a_workflow_tool_one_level_deeper(make_workflow, developer):
    inner = make_workflow(
        linear(
            transform("a", "{{ inputs.x + 1 }}"),
            inputs={"type": "object", "properties": {"x": {"type": "integer"}}},
            outputs={"y": "{{ steps.a.output }}"},
        ),
        name="inner",
    )
    agent = _agent_with(developer, _workflow_tool(developer, inner, "plus_one"))
    outer = make_workflow(
        linear(
            {
                "id": "ask",
                "type": "agent",
                "config": {"agent_id": str(agent.pk), "input": 'call plus_one {"x": 41}'},
            },
            outputs={"answer": "{{ steps.ask.output.output }}"},
        ),
        name="outer",
    )
    execution, _ = services_execute(outer, developer)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    assert execution.outputs == {"answer": 'Tool result: {"y": 42}'}
    child = WorkflowExecution.objects.get(workflow=inner)
    assert child.depth == 1 and child.status == ExecutionStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_workflow_calling_itself_through_an_agent_is_depth_limited(make_workflow, developer, settings):
    settings.WORKFLOWS_MAX_DEPTH = 2
    looping = make_workflow(linear(transform("a", 1)), name="looping")
    agent = _agent_with(developer, _workflow_tool(developer, looping, "again"))
    services.workflow_update(
        workflow=looping,
        actor=developer,
        definition=linear(
            {"id": "ask", "type": "agent", "config": {"agent_id": str(agent.pk), "input": "call again {}"}}
        ),
    )
    looping.refresh_from_db()
    execution, _ = services_execute(looping, developer)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    depths = sorted(WorkflowExecution.objects.filter(workflow=looping).values_list("depth", flat=True))
    assert depths == [0, 1, 2]  # the third call was refused, not started
    deepest = WorkflowExecution.objects.get(workflow=looping, depth=2)
    assert "at most 2 levels deep" in steps_of(deepest)["ask"].output["output"]


def services_execute(workflow, user):
    execution, created = services.workflow_execute(workflow=workflow, user=user)
    execution.refresh_from_db()
    return execution, created
