"""Runs beyond one loop: concurrency of tool calls, idempotency, cancel, serialized
conversations, agents calling agents."""

import threading

import pytest

from agents.models import AgentRun, Conversation
from agents.runs import run_cancel, run_execute, run_start
from tests.fake_llm import Reply
from tools import services as tool_services
from tools.models import ToolExecution


def interact(agent, user, text="hello", **kwargs):
    run, _ = run_start(agent=agent, user=user, input=text, **kwargs)
    return run_execute(run=run)


@pytest.mark.django_db(transaction=True)
def test_tool_calls_of_one_turn_run_concurrently(developer, llm, deployed_agent, fake_api, settings):
    settings.AGENTS_TOOL_CONCURRENCY = 4
    slow = tool_services.tool_create(
        owner=developer, name="slow", type="http", config={"url": fake_api.url + "/slow?seconds=0.6"}
    )
    tool_services.tool_validate(tool=slow, actor=developer)
    slow = tool_services.tool_deploy(tool=slow, actor=developer)
    agent = deployed_agent(tools=[slow])
    llm.push(Reply.tool_calls([("slow", {}), ("slow", {}), ("slow", {})]), Reply.text("all done"))
    run = interact(agent, developer)
    assert run.status == "succeeded", run.error
    executions = list(ToolExecution.objects.filter(caller_ref=str(run.pk)).order_by("started_at"))
    assert len(executions) == 3 and all(e.status == "succeeded" for e in executions)
    # all three were in flight at the same time: each started before the first one finished
    first_finished = min(e.finished_at for e in executions)
    assert all(e.started_at < first_finished for e in executions)


@pytest.mark.django_db
def test_concurrency_cap_of_one_runs_calls_in_order(developer, llm, deployed_agent, builtin_tool, settings):
    settings.AGENTS_TOOL_CONCURRENCY = 1
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "1+1"}), ("calculator", {"expression": "2+2"})]))
    run = interact(agent, developer)
    results = [m["content"] for m in llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert results == ['{"result": 2}', '{"result": 4}'] and run.tool_calls == 2


@pytest.mark.django_db
def test_same_idempotency_key_returns_the_same_run(developer, llm, deployed_agent):
    agent = deployed_agent()
    first, created = run_start(agent=agent, user=developer, input="hi", idempotency_key="k-1")
    run_execute(run=first)
    again, created_again = run_start(agent=agent, user=developer, input="hi", idempotency_key="k-1")
    assert created and not created_again and again.pk == first.pk
    assert AgentRun.objects.count() == 1 and len(llm.requests) == 1


@pytest.mark.django_db
def test_cancel_a_queued_run_and_a_finished_run_stays(developer, llm, deployed_agent):
    agent = deployed_agent()
    run, _ = run_start(agent=agent, user=developer, input="hi")
    assert run_cancel(run=run).status == "cancelled"
    assert run_execute(run=run).status == "cancelled" and llm.requests == []  # never executed
    done = interact(agent, developer)
    assert run_cancel(run=done).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_cancel_a_running_run_stops_it_at_the_next_step(developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "1"})], delay=0.8), Reply.text("never"))
    run, _ = run_start(agent=agent, user=developer, input="hi")
    worker = threading.Thread(target=run_execute, kwargs={"run": run})
    worker.start()
    for _ in range(50):
        if AgentRun.objects.get(pk=run.pk).status == "running":
            break
        threading.Event().wait(0.05)
    run_cancel(run=AgentRun.objects.get(pk=run.pk))
    worker.join(10)
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("cancelled", "cancelled")
    assert len(llm.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_runs_on_one_conversation_are_serialized(developer, llm, deployed_agent):
    agent = deployed_agent()
    llm.push(Reply.text("slow one", delay=0.6), Reply.text("second"))
    first, _ = run_start(agent=agent, user=developer, input="one")
    second, _ = run_start(agent=agent, user=developer, input="two", conversation_id=first.conversation_id)
    threads = [threading.Thread(target=run_execute, kwargs={"run": r}) for r in (first, second)]
    threads[0].start()
    threading.Event().wait(0.2)
    threads[1].start()
    for t in threads:
        t.join(10)
    first.refresh_from_db(), second.refresh_from_db()
    assert first.status == second.status == "succeeded"
    assert second.started_at >= first.started_at and second.finished_at > first.finished_at
    # the second run saw the first one's whole exchange
    assert [m["content"] for m in llm.requests[1].body["messages"]][-3:] == ["one", "slow one", "two"]
    assert Conversation.objects.get(pk=first.conversation_id).active_run_id is None


@pytest.mark.django_db
def test_interact_needs_a_deployed_agent_and_valid_input(developer, deployed_agent, other_developer):
    from agentmesh.core.exceptions import ConflictError, ServiceValidationError

    agent = deployed_agent()
    with pytest.raises(ServiceValidationError):
        run_start(agent=agent, user=developer)
    with pytest.raises(ServiceValidationError):
        run_start(agent=agent, user=developer, messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(ServiceValidationError):
        run_start(agent=agent, user=developer, messages=[{"role": "user", "content": "x"}], input="y")
    mine = interact(agent, developer)
    with pytest.raises(ServiceValidationError):  # someone else's conversation
        run_start(agent=agent, user=other_developer, input="x", conversation_id=mine.conversation_id)
    agent.status = "undeployed"
    agent.save()
    with pytest.raises(ConflictError):
        run_start(agent=agent, user=developer, input="x")


@pytest.mark.django_db
def test_an_agent_calls_another_agent_as_a_tool(developer, llm, deployed_agent, settings):
    inner = deployed_agent(name="inner")
    tool = tool_services.tool_create(
        owner=developer, name="ask_inner", type="agent", config={"agent_id": str(inner.pk)}
    )
    assert tool.parameters_schema["required"] == ["input"]
    tool_services.tool_validate(tool=tool, actor=developer)
    tool = tool_services.tool_deploy(tool=tool, actor=developer)
    outer = deployed_agent(name="outer", tools=[tool])
    llm.push(
        Reply.tool_calls([("ask_inner", {"input": "what is up?"})]),
        Reply.text("inner says hi"),
        Reply.text("done"),
    )
    run = interact(outer, developer)
    assert run.status == "succeeded", run.error
    child = AgentRun.objects.get(parent_run=run)
    assert child.agent == inner and child.depth == 1 and child.output == "inner says hi"
    tool_message = next(m for m in llm.requests[2].body["messages"] if m["role"] == "tool")
    assert tool_message["content"] == "inner says hi"


@pytest.mark.django_db
def test_agent_tool_depth_is_limited(developer, llm, deployed_agent, settings):
    settings.AGENTS_MAX_DEPTH = 0
    inner = deployed_agent(name="inner")
    tool = tool_services.tool_create(
        owner=developer, name="ask_inner", type="agent", config={"agent_id": str(inner.pk)}
    )
    tool_services.tool_validate(tool=tool, actor=developer)
    outer = deployed_agent(name="outer", tools=[tool_services.tool_deploy(tool=tool, actor=developer)])
    llm.push(Reply.tool_calls([("ask_inner", {"input": "x"})]), Reply.text("gave up"))
    run = interact(outer, developer)
    assert run.status == "succeeded" and not AgentRun.objects.filter(parent_run=run).exists()
    tool_message = next(m for m in llm.requests[1].body["messages"] if m["role"] == "tool")
    assert "levels deep" in tool_message["content"]
