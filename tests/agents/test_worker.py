"""A background run executed by a real Celery worker on the configured broker."""

import pytest

from agents.models import AgentRun
from tests.fake_llm import Reply

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_background_run_on_a_real_worker(
    live_worker, client_for, developer, llm, deployed_agent, builtin_tool
):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "20+22"})]), Reply.text("42"))
    response = client_for(developer).post(
        f"/api/v1/agents/{agent.pk}/interact", {"input": "20+22?", "background": True}, format="json"
    )
    assert response.status_code == 202
    run = live_worker.wait_for(
        lambda: AgentRun.objects.filter(pk=response.json()["id"], status="succeeded").first(), timeout=60
    )
    assert run.output == "42" and run.tool_calls == 1
    assert run.steps.count() == 3
