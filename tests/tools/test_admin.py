"""The tool pages of the operator console: validate/deploy/undeploy through the services, a tool
execution's story (arguments redacted, result, caller, trace), append-only history, search."""

import re

import pytest

from observability.models import ObservabilityEvent
from tools import services
from tools.models import Tool, ToolExecution, ToolStatus

pytestmark = pytest.mark.django_db

TOOLS = "/admin/tools/tool/"
EXECUTIONS = "/admin/tools/toolexecution/"


def calculator(owner, name="calc", *, deploy=True) -> Tool:
    tool = services.tool_create(owner=owner, name=name, type="builtin", config={"function": "calculator"})
    if deploy:
        services.tool_validate(tool=tool, actor=owner)
        tool = services.tool_deploy(tool=tool, actor=owner)
    return tool


def audits(action: str, obj) -> list[ObservabilityEvent]:
    return list(ObservabilityEvent.objects.filter(type=f"audit.{action}", resource_id=str(obj.pk)))


def buttons(html: str) -> set[str]:
    return set(re.findall(r'class="object-action action-([a-z_]+)"', html))


def results(client, url: str) -> list:
    response = client.get(url)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_validate_deploy_undeploy_from_the_tool_page(operator, developer):
    tool = calculator(developer, deploy=False)
    page = operator.get(f"{TOOLS}{tool.pk}/change/").content.decode()
    assert buttons(page) == {"validate"}  # a draft cannot be deployed yet
    assert operator.post(f"{TOOLS}{tool.pk}/do/deploy/", {"confirm": "Yes"}).status_code == 404

    assert 'name="confirm"' in operator.get(f"{TOOLS}{tool.pk}/do/validate/").content.decode()
    assert operator.post(f"{TOOLS}{tool.pk}/do/validate/", {"confirm": "Yes"}).status_code == 302
    tool.refresh_from_db()
    assert tool.status == ToolStatus.VALIDATED
    assert [e.payload["channel"] for e in audits("validate", tool)] == ["admin"]
    assert buttons(operator.get(f"{TOOLS}{tool.pk}/change/").content.decode()) == {"validate", "deploy"}

    assert operator.post(f"{TOOLS}{tool.pk}/do/deploy/", {"confirm": "Yes"}).status_code == 302
    tool.refresh_from_db()
    assert tool.status == ToolStatus.DEPLOYED
    (deployed,) = audits("deploy", tool)
    assert deployed.payload["channel"] == "admin" and deployed.actor_id == operator.user.pk
    assert buttons(operator.get(f"{TOOLS}{tool.pk}/change/").content.decode()) == {"undeploy"}

    assert operator.post(f"{TOOLS}{tool.pk}/do/undeploy/", {"confirm": "Yes"}).status_code == 302
    tool.refresh_from_db()
    assert tool.status == ToolStatus.DISABLED
    assert [e.payload["channel"] for e in audits("undeploy", tool)] == ["admin"]


def test_a_failed_validation_is_reported_not_a_500(operator, developer):
    tool = services.tool_create(
        owner=developer, name="bad", type="http", config={"url": "http://127.0.0.1:9/none", "method": "GET"}
    )
    Tool.objects.filter(pk=tool.pk).update(config={"method": "GET"})  # broken behind the service's back
    response = operator.post(f"{TOOLS}{tool.pk}/do/validate/", {"confirm": "Yes"}, follow=True)
    assert response.status_code == 200
    text = " ".join(str(m) for m in response.context["messages"])
    assert "Validate failed" in text and "config" in text
    tool.refresh_from_db()
    assert tool.status == ToolStatus.DRAFT


def test_a_staff_developer_may_not_act(staff_developer, developer):
    tool = calculator(developer)
    for action in ("undeploy", "validate", "deploy"):
        url = f"{TOOLS}{tool.pk}/do/{action}/"
        assert staff_developer.get(url).status_code == 403
        assert staff_developer.post(url, {"confirm": "Yes"}).status_code == 403
    listing = staff_developer.get(TOOLS)
    assert listing.status_code == 200 and 'value="undeploy_tools"' not in listing.content.decode()
    staff_developer.post(TOOLS, {"action": "undeploy_tools", "_selected_action": [str(tool.pk)]})
    tool.refresh_from_db()
    assert tool.status == ToolStatus.DEPLOYED


def test_an_execution_page_shows_the_call(operator, developer):
    tool = calculator(developer)
    execution = services.tool_execute(tool=tool, arguments={"expression": "6*7"}, actor=developer)
    ToolExecution.objects.filter(pk=execution.pk).update(duration_ms=7914.103000075556)
    html = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    assert "&quot;expression&quot;: &quot;6*7&quot;" in html and "&quot;result&quot;: 42" in html
    assert "7.9 s" in html and "7914.10" not in html
    assert re.search(r'<div class="readonly">succeeded</div>', html)
    assert f'href="{TOOLS}{tool.pk}/change/"' in html
    assert execution.trace_id
    assert f"/admin/observability/span/?trace_id={execution.trace_id}" in html
    assert f"resource_type=tools.toolexecution&amp;resource_id={execution.pk}" in html
    listing = operator.get(EXECUTIONS).content.decode()
    assert f'title="{execution.pk}"' in listing and f">{str(execution.pk)[:8]}<" in listing


def test_an_execution_links_its_caller(operator, developer, make_user):
    from agents.models import AgentRun, Conversation

    tool = calculator(developer)
    conversation = Conversation.objects.create(user=developer)
    run = AgentRun.objects.create(conversation=conversation, user=developer)
    execution = services.tool_execute(
        tool=tool,
        arguments={"expression": "1"},
        actor=developer,
        caller_type="agent_run",
        caller_ref=str(run.pk),
    )
    assert (
        f'href="/admin/agents/agentrun/{run.pk}/change/"'
        in operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    )
    assert f'href="/admin/agents/agentrun/{run.pk}/change/"' in operator.get(EXECUTIONS).content.decode()
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q={run.pk}")] == [execution.pk]  # by caller


def test_executions_are_append_only(operator, developer):
    execution = services.tool_execute(
        tool=calculator(developer), arguments={"expression": "1"}, actor=developer
    )
    assert operator.get(f"{EXECUTIONS}add/").status_code == 403
    assert operator.get(f"{EXECUTIONS}{execution.pk}/delete/").status_code == 403
    assert operator.post(f"{EXECUTIONS}{execution.pk}/delete/", {"post": "yes"}).status_code == 403
    detail = operator.get(f"{EXECUTIONS}{execution.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert operator.post(f"{EXECUTIONS}{execution.pk}/change/", {"status": "failed"}).status_code == 403
    assert 'value="delete_selected"' not in operator.get(EXECUTIONS).content.decode()
    assert ToolExecution.objects.filter(pk=execution.pk, status="succeeded").exists()


def test_search_and_filters_find_the_right_executions(operator, developer):
    calc, other = calculator(developer, "calc"), calculator(developer, "other_calc")
    ok = services.tool_execute(tool=calc, arguments={"expression": "1+1"}, actor=developer)
    bad = services.tool_execute(tool=other, arguments={"expression": "1/0"}, actor=developer)
    assert (ok.status, bad.status) == ("succeeded", "failed")
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q={ok.pk}")] == [ok.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q={str(bad.pk)[:8]}")] == [bad.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q=other_calc")] == [bad.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?tool__id__exact={calc.pk}")] == [ok.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?status__exact=failed")] == [bad.pk]
