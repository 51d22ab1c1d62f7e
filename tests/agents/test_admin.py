"""The agent pages of the operator console: a run's story (steps with tool calls, messages,
trace), cancel and deploy/undeploy through the services, append-only history, search."""

import re
from decimal import Decimal

import pytest

from agents.models import Agent, AgentRun, AgentRunStep, AgentStatus, Conversation, Message
from agents.runs import run_execute, run_start
from masterdata.models import ModelConfig
from observability.models import ObservabilityEvent
from tests.fake_llm import Reply

from .factories import make_agent

pytestmark = pytest.mark.django_db

RUNS = "/admin/agents/agentrun/"
RUN_STEPS = "/admin/agents/agentrunstep/"
AGENTS = "/admin/agents/agent/"


def audit(action: str, obj) -> ObservabilityEvent:
    events = list(ObservabilityEvent.objects.filter(type=f"audit.{action}", resource_id=str(obj.pk)))
    assert len(events) == 1, [(e.type, e.payload) for e in events]
    return events[0]


def buttons(html: str) -> set[str]:
    return set(re.findall(r'class="object-action action-([a-z_]+)"', html))


def results(client, url: str) -> list:
    response = client.get(url)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def tool_run(developer, llm, deployed_agent, builtin_tool):
    """A finished run that called the calculator once, then answered."""
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "6*7"})]), Reply.text("It is <b>42</b>."))
    run, _ = run_start(agent=agent, user=developer, input="What is 6*7?")
    run = run_execute(run=run)
    assert run.status == "succeeded", run.error
    return run


# --- the story --------------------------------------------------------------------------------
def test_a_run_shows_its_steps_tool_calls_and_messages_in_order(operator, tool_run):
    AgentRun.objects.filter(pk=tool_run.pk).update(duration_ms=123_000.5, cost_usd=Decimal("0.00120000"))
    html = operator.get(f"{RUNS}{tool_run.pk}/change/").content.decode()
    kinds = re.findall(r'<td class="field-kind">\s*<p>([^<]+)</p>', html)
    assert kinds == ["LLM call", "Tool call", "LLM call"]
    tool_step = AgentRunStep.objects.get(run=tool_run, kind="tool")
    assert tool_step.tool_execution_id
    assert f'href="/admin/tools/toolexecution/{tool_step.tool_execution_id}/change/"' in html
    roles = re.findall(r'<td class="field-role">\s*<p>(\w+)</p>', html)
    assert roles == ["user", "assistant", "tool", "assistant"]
    # the tool call's arguments, decoded from their JSON text and pretty-printed
    assert "&quot;expression&quot;: &quot;6*7&quot;" in html
    assert "It is &lt;b&gt;42&lt;/b&gt;." in html and "<b>42</b>" not in html
    assert "2 min 3 s" in html and "$0.0012" in html
    assert "123000.5" not in html and "0.00120000" not in html
    assert f"/admin/observability/span/?trace_id={tool_run.trace_id}" in html
    assert f"resource_type=agents.agentrun&amp;resource_id={tool_run.pk}" in html


def test_the_runs_list_shows_short_ids_and_human_values(operator, tool_run):
    html = operator.get(RUNS).content.decode()
    full = str(tool_run.pk)
    assert f'title="{full}"' in html and f">{full[:8]}<" in html and f">{full}<" not in html
    assert "0.00000000" not in html


# --- actions ----------------------------------------------------------------------------------
def test_cancel_a_queued_run_through_the_confirmation_page(operator, developer, deployed_agent):
    run, _ = run_start(agent=deployed_agent(), user=developer, input="hi")
    page = operator.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert buttons(page) == {"cancel"}
    url = f"{RUNS}{run.pk}/do/cancel/"
    assert 'name="confirm"' in operator.get(url).content.decode()
    response = operator.post(url, {"confirm": "Yes"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert (run.status, run.stop_reason) == ("cancelled", "cancelled")
    event = audit("cancel", run)
    assert event.payload["channel"] == "admin" and event.actor_id == operator.user.pk
    after = operator.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert buttons(after) == set() and re.search(r'<div class="readonly">cancelled</div>', after)
    assert operator.post(url, {"confirm": "Yes"}).status_code == 404  # no longer applies


def test_cancel_a_running_run_asks_it_to_stop(operator, developer, deployed_agent):
    run, _ = run_start(agent=deployed_agent(), user=developer, input="hi")
    AgentRun.objects.filter(pk=run.pk).update(status="running")
    assert operator.post(f"{RUNS}{run.pk}/do/cancel/", {"confirm": "Yes"}).status_code == 302
    run.refresh_from_db()
    assert run.status == "running" and run.cancel_requested
    assert audit("cancel", run).payload["changes"] == {"cancel_requested": True}
    assert buttons(operator.get(f"{RUNS}{run.pk}/change/").content.decode()) == set()


def test_bulk_cancel_and_finished_runs_offer_nothing(operator, developer, deployed_agent, tool_run):
    queued = [run_start(agent=deployed_agent(name="bulk"), user=developer, input="x")[0]]
    response = operator.post(
        RUNS, {"action": "cancel_selected", "_selected_action": [str(queued[0].pk), str(tool_run.pk)]}
    )
    assert response.status_code == 302
    assert AgentRun.objects.get(pk=queued[0].pk).status == "cancelled"
    assert AgentRun.objects.get(pk=tool_run.pk).status == "succeeded"
    assert buttons(operator.get(f"{RUNS}{tool_run.pk}/change/").content.decode()) == set()
    assert operator.post(f"{RUNS}{tool_run.pk}/do/cancel/", {"confirm": "Yes"}).status_code == 404


def test_deploy_and_undeploy_from_the_agent_page(operator, developer):
    agent = make_agent(developer)
    assert buttons(operator.get(f"{AGENTS}{agent.pk}/change/").content.decode()) == {"deploy"}
    assert 'name="confirm"' in operator.get(f"{AGENTS}{agent.pk}/do/deploy/").content.decode()
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DRAFT  # GET only asks
    assert operator.post(f"{AGENTS}{agent.pk}/do/deploy/", {"confirm": "Yes"}).status_code == 302
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DEPLOYED and agent.deployed_version.version == 1
    event = audit("deploy", agent)
    assert event.payload["channel"] == "admin" and event.actor_id == operator.user.pk
    assert buttons(operator.get(f"{AGENTS}{agent.pk}/change/").content.decode()) == {"deploy", "undeploy"}

    assert operator.post(f"{AGENTS}{agent.pk}/do/undeploy/", {"confirm": "Yes"}).status_code == 302
    agent.refresh_from_db()
    assert agent.status == AgentStatus.UNDEPLOYED
    assert audit("undeploy", agent).payload["channel"] == "admin"
    assert operator.post(f"{AGENTS}{agent.pk}/do/undeploy/", {"confirm": "Yes"}).status_code == 404


def test_a_failed_deploy_shows_the_failed_checks(operator, developer):
    agent = make_agent(developer)
    ModelConfig.objects.filter(pk=agent.model_id).update(is_active=False)
    response = operator.post(f"{AGENTS}{agent.pk}/do/deploy/", {"confirm": "Yes"}, follow=True)
    assert response.status_code == 200
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Deploy failed" in text and "checks.model" in text
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DRAFT
    assert not ObservabilityEvent.objects.filter(type="audit.deploy", resource_id=str(agent.pk)).exists()


def test_a_staff_developer_may_not_act(staff_developer, developer, deployed_agent):
    agent = deployed_agent()
    run, _ = run_start(agent=agent, user=developer, input="hi")
    for url in (
        f"{RUNS}{run.pk}/do/cancel/",
        f"{AGENTS}{agent.pk}/do/undeploy/",
        f"{AGENTS}{agent.pk}/do/deploy/",
    ):
        assert staff_developer.get(url).status_code == 403
        assert staff_developer.post(url, {"confirm": "Yes"}).status_code == 403
    listing = staff_developer.get(AGENTS)
    assert listing.status_code == 200  # developers may look (their role's view permission)
    assert 'value="undeploy_agents"' not in listing.content.decode()  # but not act in bulk
    staff_developer.post(AGENTS, {"action": "undeploy_agents", "_selected_action": [str(agent.pk)]})
    run.refresh_from_db()
    agent.refresh_from_db()
    assert run.status == "queued" and agent.status == AgentStatus.DEPLOYED


# --- history ------------------------------------------------------------------------------------
def test_runs_steps_messages_and_conversations_are_append_only(operator, tool_run):
    step = AgentRunStep.objects.filter(run=tool_run).first()
    message = Message.objects.filter(run=tool_run).first()
    conversation = Conversation.objects.get(pk=tool_run.conversation_id)
    for base, obj in (
        (RUNS, tool_run),
        (RUN_STEPS, step),
        ("/admin/agents/message/", message),
        ("/admin/agents/conversation/", conversation),
        ("/admin/agents/agentversion/", tool_run.version),
    ):
        assert operator.get(f"{base}add/").status_code == 403
        assert operator.get(f"{base}{obj.pk}/delete/").status_code == 403
        assert operator.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
        detail = operator.get(f"{base}{obj.pk}/change/")
        assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
        assert operator.post(f"{base}{obj.pk}/change/", {"status": "failed"}).status_code == 403
        assert 'value="delete_selected"' not in operator.get(base).content.decode()
        assert type(obj).objects.filter(pk=obj.pk).exists()


# --- search and filters -------------------------------------------------------------------------
def test_search_and_filters_find_the_right_runs_and_steps(
    operator, developer, other_developer, deployed_agent, tool_run
):
    other_agent = deployed_agent(name="other", owner=other_developer)
    queued, _ = run_start(agent=other_agent, user=other_developer, input="later")
    assert [r.pk for r in results(operator, f"{RUNS}?q={tool_run.pk}")] == [tool_run.pk]
    assert [r.pk for r in results(operator, f"{RUNS}?q={str(queued.pk)[:8]}")] == [queued.pk]
    assert [r.pk for r in results(operator, f"{RUNS}?q=other")] == [queued.pk]  # agent name
    assert [r.pk for r in results(operator, f"{RUNS}?q={other_developer.username}")] == [queued.pk]
    assert [r.pk for r in results(operator, f"{RUNS}?agent__id__exact={other_agent.pk}")] == [queued.pk]
    assert [r.pk for r in results(operator, f"{RUNS}?user__id__exact={developer.pk}")] == [tool_run.pk]
    assert [r.pk for r in results(operator, f"{RUNS}?status__exact=queued")] == [queued.pk]
    since = "created_at__gte=2000-01-01T00:00:00%2B00:00"
    assert len(results(operator, f"{RUNS}?{since}")) == 2
    assert results(operator, f"{RUNS}?created_at__lt=2000-01-01T00:00:00%2B00:00") == []

    messages = results(operator, f"/admin/agents/message/?q={tool_run.pk}")
    assert sorted(m.seq for m in messages) == [1, 2, 3, 4]
    by_conversation = results(operator, f"{RUNS}?q={tool_run.conversation_id}")
    assert [r.pk for r in by_conversation] == [tool_run.pk]
    steps = results(operator, f"{RUN_STEPS}?q={tool_run.pk}")
    assert sorted(s.seq for s in steps) == [s.seq for s in AgentRunStep.objects.filter(run=tool_run)]
    assert [s.kind for s in results(operator, f"{RUN_STEPS}?q=calculator")] == ["tool"]
    assert [s.kind for s in results(operator, f"{RUN_STEPS}?kind__exact=tool")] == ["tool"]
    assert Agent.objects.count() == 2


def test_pages_do_not_query_per_row(operator, developer, llm, deployed_agent, builtin_tool):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert operator.get(url).status_code == 200
        return len(ctx.captured_queries)

    agent = deployed_agent(tools=[builtin_tool()])

    def interact(calls: int) -> AgentRun:
        llm.push(Reply.tool_calls([("calculator", {"expression": "6*7"})] * calls), Reply.text("done"))
        run, _ = run_start(agent=agent, user=developer, input="x")
        return run_execute(run=run)

    def pages(run):
        conversation = f"/admin/agents/conversation/{run.conversation_id}/change/"
        return [RUNS, RUN_STEPS, f"{RUNS}{run.pk}/change/", "/admin/agents/message/", conversation]

    first = interact(1)
    [queries(url) for url in pages(first)]  # warm the per-process caches (content types)
    small = [queries(url) for url in pages(first)]
    big = interact(4)
    for _ in range(3):
        interact(1)
    assert [queries(url) for url in pages(big)] == small


def test_a_long_conversation_shows_its_first_messages_and_links_the_rest(operator, tool_run, monkeypatch):
    from agents import admin as agents_admin

    monkeypatch.setattr(agents_admin, "ROWS_SHOWN", 2)
    url = f"/admin/agents/conversation/{tool_run.conversation_id}/change/"
    html = operator.get(url).content.decode()
    assert re.findall(r'<td class="field-role">\s*<p>(\w+)</p>', html) == ["user", "assistant"]
    assert "4 message(s) in the message list" in html and "(the first 2 below)" in html
    listed = results(operator, f"/admin/agents/message/?conversation__id__exact={tool_run.conversation_id}")
    assert len(listed) == 4
