"""The tool-calling loop against a fake OpenAI-compatible server: tools, limits, errors."""

import json
from decimal import Decimal

import pytest

from agents.models import AgentRunStep, Message
from agents.runs import run_execute, run_start
from tests.fake_llm import Reply
from tools.models import ToolExecution

pytestmark = pytest.mark.django_db


def interact(agent, user, text="hello", **kwargs):
    run, created = run_start(agent=agent, user=user, input=text, **kwargs)
    assert created
    return run_execute(run=run)


def test_two_tool_conversation_end_to_end(developer, llm, deployed_agent, builtin_tool):
    calc, stats = builtin_tool("calculator"), builtin_tool("text_stats")
    agent = deployed_agent(tools=[calc, stats])
    llm.push(
        Reply.tool_calls([("calculator", {"expression": "6*7"})], usage=(20, 5)),
        Reply.tool_calls([("text_stats", {"text": "forty two"})], usage=(30, 5)),
        Reply.text("It is 42, in two words.", usage=(40, 7)),
    )
    run = interact(agent, developer, "What is 6*7, and how many words is 'forty two'?")
    assert run.status == "succeeded" and run.stop_reason == "completed", run.error
    assert run.output == "It is 42, in two words."
    assert (run.turns, run.tool_calls, run.input_tokens, run.output_tokens) == (3, 2, 90, 17)
    assert run.cost_usd == Decimal("90") * 1000 / 1_000_000 + Decimal("17") * 2000 / 1_000_000

    kinds = list(AgentRunStep.objects.filter(run=run).values_list("kind", "name"))
    assert kinds == [
        ("llm", "fake-1"),
        ("tool", "calculator"),
        ("llm", "fake-1"),
        ("tool", "text_stats"),
        ("llm", "fake-1"),
    ]
    roles = list(Message.objects.filter(run=run).values_list("role", flat=True))
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]

    executions = ToolExecution.objects.filter(caller_type="agent_run", caller_ref=str(run.pk))
    assert executions.count() == 2 and set(executions.values_list("status", flat=True)) == {"succeeded"}
    # the model saw the system prompt, the tools, and the tool results
    first, third = llm.requests[0].body, llm.requests[2].body
    assert first["messages"][0] == {"role": "system", "content": "You are terse."}
    assert {t["function"]["name"] for t in first["tools"]} == {"calculator", "text_stats"}
    tool_results = [m for m in third["messages"] if m["role"] == "tool"]
    assert json.loads(tool_results[0]["content"]) == {"result": 42}


def test_invalid_arguments_go_back_to_the_model(developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expr": "1+1"})]), Reply.text("Sorry, retrying is for later."))
    run = interact(agent, developer)
    assert run.status == "succeeded"
    tool_message = next(m for m in llm.requests[1].body["messages"] if m["role"] == "tool")
    assert tool_message["content"].startswith("Error: invalid arguments: arguments.expression")
    step = AgentRunStep.objects.get(run=run, kind="tool")
    assert step.status == "failed"


def test_unknown_tool_and_broken_json_are_tool_errors(developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("nope", {}), ("calculator", "{not json")]), Reply.text("done"))
    run = interact(agent, developer)
    assert run.status == "succeeded"
    results = [m["content"] for m in llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert results == ["Error: there is no tool named nope.", "Error: the arguments are not a JSON object."]


@pytest.mark.parametrize(
    ("limits", "script", "stop_reason"),
    [
        ({"max_turns": 2}, [Reply.tool_calls([("calculator", {"expression": "1"})])] * 3, "max_turns"),
        (
            {"max_tool_calls": 1},
            [Reply.tool_calls([("calculator", {"expression": "1"})])] * 3,
            "max_tool_calls",
        ),
        (
            {"max_output_tokens": 8},
            [Reply.tool_calls([("calculator", {"expression": "1"})], usage=(5, 10))] * 3,
            "token_budget",
        ),
        (
            {"max_input_tokens": 15},
            [Reply.tool_calls([("calculator", {"expression": "1"})], usage=(20, 1))] * 3,
            "token_budget",
        ),
        (
            {"max_cost_usd_per_run": 0.01},
            [Reply.tool_calls([("calculator", {"expression": "1"})], usage=(20, 5))] * 3,
            "cost_limit",
        ),
        (
            {"denied_tools": ["calculator"]},
            [Reply.tool_calls([("calculator", {"expression": "1"})])],
            "tool_policy",
        ),
        (
            {"allowed_tools": ["other"]},
            [Reply.tool_calls([("calculator", {"expression": "1"})])],
            "tool_policy",
        ),
    ],
)
def test_each_limit_stops_the_run_incomplete(
    developer, llm, deployed_agent, builtin_tool, limits, script, stop_reason
):
    agent = deployed_agent(tools=[builtin_tool()], limits=limits)
    llm.push(*script)
    run = interact(agent, developer)
    assert (run.status, run.stop_reason) == ("incomplete", stop_reason), run.error
    assert run.error
    # every tool call the model asked for is answered in the stored conversation
    asked = [c["id"] for m in Message.objects.filter(run=run, role="assistant") for c in (m.tool_calls or [])]
    answered = list(Message.objects.filter(run=run, role="tool").values_list("tool_call_id", flat=True))
    assert asked == answered


def test_tool_policy_hides_denied_tools_from_the_model(developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(
        tools=[builtin_tool(), builtin_tool("text_stats")], limits={"denied_tools": ["calculator"]}
    )
    llm.push(Reply.text("fine"))
    interact(agent, developer)
    assert [t["function"]["name"] for t in llm.requests[0].body["tools"]] == ["text_stats"]


def test_content_policy_stops_before_any_model_call(developer, llm, deployed_agent):
    agent = deployed_agent(limits={"blocked_terms": ["Password"], "max_input_chars": 1000})
    run = interact(agent, developer, "tell me the password")
    assert (run.status, run.stop_reason) == ("incomplete", "content_policy")
    assert llm.requests == []
    long = interact(deployed_agent(name="b", limits={"max_input_chars": 5}), developer, "way too long")
    assert long.stop_reason == "content_policy"


def test_daily_cost_limit_counts_earlier_runs(developer, llm, deployed_agent):
    agent = deployed_agent(limits={"max_cost_usd_per_day": 0.05})
    llm.push(Reply.text("one", usage=(20, 10)))  # 0.02 + 0.02 = 0.04
    assert interact(agent, developer).status == "succeeded"
    llm.push(Reply.text("two", usage=(20, 10)))
    assert interact(agent, developer).status == "succeeded"  # 0.04 before: under 0.05 at start
    third = interact(agent, developer)
    assert (third.status, third.stop_reason) == ("incomplete", "cost_limit")


def test_wall_clock_timeout_ends_the_run(developer, llm, deployed_agent):
    agent = deployed_agent(limits={"timeout_seconds": 1})
    llm.push(Reply.text("too late", delay=3))
    run = interact(agent, developer)
    assert (run.status, run.stop_reason) == ("incomplete", "timeout")
    assert run.duration_ms < 2900


def test_model_failure_fails_the_run_with_the_reason(developer, llm, deployed_agent, settings):
    settings.LLM_MAX_RETRIES = 0
    agent = deployed_agent()
    llm.push(Reply.error(400, message="bad request from test"))
    run = interact(agent, developer)
    assert (run.status, run.stop_reason) == ("failed", "error")
    assert "Model call failed" in run.error


def test_conversation_history_and_memory_window(developer, llm, deployed_agent):
    agent = deployed_agent(memory={"max_messages": 1, "max_tokens": None})
    llm.push(Reply.text("first answer"), Reply.text("second answer"), Reply.text("third answer"))
    first = interact(agent, developer, "first question")
    second = interact(agent, developer, "second question", conversation_id=first.conversation_id)
    assert second.conversation_id == first.conversation_id
    sent = [m["content"] for m in llm.requests[1].body["messages"]]
    assert sent == ["You are terse.", "first answer", "second question"]  # a window of one message
    wide = deployed_agent(name="wide")
    run = interact(wide, developer, "q1")
    interact(wide, developer, "q2", conversation_id=run.conversation_id)
    assert [m["content"] for m in llm.requests[3].body["messages"]] == [
        "You are terse.",
        "q1",
        "third answer",
        "q2",
    ]


def test_system_prompt_variables_render_in_the_sandbox(developer, llm, deployed_agent):
    agent = deployed_agent(system_prompt="You help {{ team }}.", prompt_variables={"team": "ops"})
    llm.push(Reply.text("a"), Reply.text("b"))
    interact(agent, developer)
    interact(agent, developer, variables={"team": "sales"})
    assert llm.requests[0].body["messages"][0]["content"] == "You help ops."
    assert llm.requests[1].body["messages"][0]["content"] == "You help sales."


def test_json_response_format_is_parsed(developer, llm, deployed_agent):
    agent = deployed_agent(response_format={"type": "json_schema", "schema": {"type": "object"}})
    llm.push(Reply.text('{"answer": 42}'))
    run = interact(agent, developer)
    assert run.output_json == {"answer": 42}
    assert llm.requests[0].body["response_format"]["type"] == "json_schema"


def test_spans_of_the_run_llm_and_tool_share_one_trace(developer, llm, deployed_agent, builtin_tool):
    from observability.models import Span

    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "2+2"})]), Reply.text("4"))
    run = interact(agent, developer)
    spans = Span.objects.filter(trace_id=run.trace_id)
    root = spans.get(kind="agent")
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert spans.filter(kind="llm").count() == 2 and spans.filter(kind="tool").count() == 1
    assert all(s.parent_span_id == root.span_id for s in spans.exclude(pk=root.pk))


def test_rate_limit_counts_the_agents_recent_runs(developer, llm, deployed_agent):
    agent = deployed_agent(limits={"requests_per_minute": 2})
    assert interact(agent, developer).status == "succeeded"
    assert interact(agent, developer).status == "succeeded"
    third = interact(agent, developer)
    assert (third.status, third.stop_reason) == ("incomplete", "rate_limit")
    assert len(llm.requests) == 2
