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
