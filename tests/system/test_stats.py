"""GET /system/stats: counts that match the data, per-day series, usage totals, table sizes, and
a number of queries that does not grow with the data."""

import itertools
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import AgentRun
from tests.agents.factories import make_agent
from tests.system.status_helpers import make_execution, make_run, make_workflow
from tools import services as tool_services
from workflows.models import WorkflowExecution

URL = "/api/v1/system/stats"
_names = itertools.count()


def _tool(owner):
    return tool_services.tool_create(
        owner=owner, name=f"calc-{next(_names)}", type="builtin", config={"function": "calculator"}
    )


def _data(owner, scale: int) -> None:
    agent = make_agent(owner)
    workflow = make_workflow(owner)
    for _ in range(scale):
        _tool(owner)
        make_run(owner, "succeeded", agent=agent, input_tokens=10, output_tokens=5, cost_usd=Decimal("0.01"))
        make_run(owner, "failed", agent=agent)
        make_execution(owner, "succeeded", workflow=workflow, input_tokens=3, output_tokens=2)


def test_counts_match_the_data(client_for, admin_user, developer, plain_user):
    agent = make_agent(developer)
    workflow = make_workflow(developer)
    _tool(developer)
    now = timezone.now()
    runs = [
        make_run(
            developer, "succeeded", agent=agent, input_tokens=100, output_tokens=20, cost_usd=Decimal("0.5")
        ),
        make_run(
            developer, "succeeded", agent=agent, input_tokens=1, output_tokens=2, cost_usd=Decimal("0.25")
        ),
        make_run(developer, "failed", agent=agent),
        make_run(developer, "failed", agent=agent),
    ]
    # one run 3 days ago, one 10 days ago (only in the 30-day series), one 40 days ago (in neither)
    for run, days in zip(runs[1:], (3, 10, 40), strict=True):
        AgentRun.objects.filter(pk=run.pk).update(created_at=now - timedelta(days=days))
    make_execution(developer, "succeeded", workflow=workflow, input_tokens=7, output_tokens=3)
    old = make_execution(developer, "failed", workflow=workflow)
    WorkflowExecution.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=6))

    body = client_for(admin_user).get(URL).json()

    assert body["users"]["total"] == 3 and body["users"]["active"] == 3
    assert body["users"]["by_role"] == {"admin": 1, "developer": 1, "user": 1}
    assert body["agents"]["total"] == 1 and body["agents"]["by_status"] == {agent.status: 1}
    assert body["tools"] == {"total": 1, "by_type": {"builtin": 1}}
    assert body["workflows"]["total"] == 1

    agent_runs = body["agent_runs"]
    assert agent_runs["total"] == 4 and agent_runs["by_status"] == {"succeeded": 2, "failed": 2}
    week, month = agent_runs["last_7_days"], agent_runs["last_30_days"]
    assert len(week) == 7 and len(month) == 30
    assert week[-1]["day"] == timezone.localdate(now).isoformat()
    assert week[-1]["by_status"] == {"succeeded": 1}
    assert week[-4]["by_status"] == {"succeeded": 1}  # 3 days ago
    assert sum(d["total"] for d in week) == 2
    assert sum(d["total"] for d in month) == 3 and month[-11]["by_status"] == {"failed": 1}
    assert month == [*month[:23], *week]  # the week is the month's tail

    executions = body["workflow_executions"]
    assert executions["by_status"] == {"succeeded": 1, "failed": 1}
    assert executions["last_7_days"][-7]["by_status"] == {"failed": 1}

    assert body["usage"]["agent_runs"] == {"input_tokens": 101, "output_tokens": 22, "cost_usd": "0.75000000"}
    assert body["usage"]["workflow_executions"]["input_tokens"] == 7

    database = body["database"]
    assert database["vendor"] == connection.vendor
    tables = {t["table"]: t for t in database["tables"]}
    assert {"agents_agentrun", "workflows_workflowexecution", "accounts_user"} <= set(tables)
    if database["method"] in ("pg_total_relation_size", "dbstat"):
        assert tables["agents_agentrun"]["bytes"] > 0
    else:
        assert tables["agents_agentrun"]["rows"] == 4


def test_query_count_does_not_grow_with_the_data(client_for, admin_user, developer):
    client = client_for(admin_user)
    _data(developer, 1)
    with CaptureQueriesContext(connection) as small:
        assert client.get(URL).status_code == 200
    _data(developer, 15)
    with CaptureQueriesContext(connection) as large:
        body = client.get(URL).json()
    assert body["agent_runs"]["total"] == 32 and body["tools"]["total"] == 16
    assert len(large.captured_queries) == len(small.captured_queries), [
        q["sql"][:120] for q in large.captured_queries
    ]
    assert len(small.captured_queries) <= 16
