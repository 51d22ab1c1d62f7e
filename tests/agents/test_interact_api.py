"""POST /api/v1/agents/{id}/interact: sync, streamed (SSE, also over a live ASGI server),
background (eager here, a real worker in test_worker.py), idempotency, permissions, cancel."""

import json
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from agents.models import AgentRun
from tests.api_base import assert_problem
from tests.fake_llm import Reply

AGENTS = "/api/v1/agents"


async def collect(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def parse_sse(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines.get("data") or "{}")))
    return events


@pytest.mark.django_db
def test_sync_interact_returns_the_run(client_for, developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(
        Reply.tool_calls([("calculator", {"expression": "3*3"})], usage=(10, 2)),
        Reply.text("9", usage=(20, 1)),
    )
    response = client_for(developer).post(f"{AGENTS}/{agent.pk}/interact", {"input": "3*3?"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "succeeded" and body["stop_reason"] == "completed" and body["output"] == "9"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["usage"] == {"input_tokens": 30, "output_tokens": 3, "total_tokens": 33}
    assert float(body["cost_usd"]) > 0 and body["duration_ms"] > 0 and body["version"] == 1
    run = client_for(developer).get(f"{AGENTS}/runs/{body['id']}")
    assert run.status_code == 200


@pytest.mark.django_db
def test_sync_interact_writes_the_run_once_and_answers_from_memory(
    client_for, developer, llm, deployed_agent, builtin_tool
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "2+2"})]), Reply.text("4"))
    client = client_for(developer)
    with CaptureQueriesContext(connection) as queries:
        body = client.post(f"{AGENTS}/{agent.pk}/interact", {"input": "2+2?"}, format="json").json()
    sql = [q["sql"] for q in queries]
    # Created running (no queued → running claim), finished with one UPDATE; the answer's
    # messages are the rows the run wrote, not read back.
    assert sum(s.startswith("UPDATE") and "agents_agentrun" in s for s in sql) == 1
    assert not any(s.startswith("SELECT") and "agents_message" in s for s in sql)
    stored = client.get(f"{AGENTS}/conversations/{body['conversation']}/messages").json()["results"]
    assert body["messages"] == [{k: m[k] for k in body["messages"][0]} for m in stored]
    assert [m["seq"] for m in body["messages"]] == [1, 2, 3, 4]
    run = AgentRun.objects.get(pk=body["id"])
    assert run.status == "succeeded" and run.started_at is not None and run.started_at <= run.finished_at


@pytest.mark.django_db
def test_the_callers_message_is_kept_when_the_model_fails_before_replying(
    client_for, developer, llm, deployed_agent, settings
):
    settings.LLM_MAX_RETRIES = 0
    agent = deployed_agent()
    llm.push(*[Reply.error(400)] * 3)
    body = (
        client_for(developer).post(f"{AGENTS}/{agent.pk}/interact", {"input": "hello?"}, format="json").json()
    )
    assert body["status"] == "failed", body
    assert [(m["seq"], m["role"], m["content"]) for m in body["messages"]] == [(1, "user", "hello?")]
    stored = client_for(developer).get(f"{AGENTS}/conversations/{body['conversation']}/messages").json()
    assert [(m["seq"], m["role"], m["content"]) for m in stored["results"]] == [(1, "user", "hello?")]


@pytest.mark.django_db
def test_interact_input_errors_name_the_field(client_for, developer, deployed_agent):
    agent = deployed_agent()
    client = client_for(developer)
    url = f"{AGENTS}/{agent.pk}/interact"
    assert_problem(client.post(url, {}, format="json"), 400, "input")
    assert_problem(
        client.post(url, {"messages": [{"role": "wizard", "content": "x"}]}, format="json"),
        400,
        "messages[0].role",
    )
    assert_problem(
        client.post(url, {"input": "x", "stream": True, "background": True}, format="json"), 400, "stream"
    )
    assert_problem(
        client.post(url, {"input": "x", "conversation_id": "not-a-uuid"}, format="json"),
        400,
        "conversation_id",
    )
    assert not AgentRun.objects.exists()


@pytest.mark.django_db
def test_undeployed_agent_is_409_and_permissions_apply(
    client_for, developer, other_developer, plain_user, deployed_agent
):
    agent = deployed_agent()
    assert_problem(
        client_for(other_developer).post(f"{AGENTS}/{agent.pk}/interact", {"input": "x"}, format="json"), 404
    )
    client_for(developer).post(
        f"{AGENTS}/{agent.pk}/share", {"users": [plain_user.username], "actions": ["use"]}, format="json"
    )
    assert (
        client_for(plain_user)
        .post(f"{AGENTS}/{agent.pk}/interact", {"input": "x"}, format="json")
        .status_code
        == 200
    )
    agent.status = "undeployed"
    agent.save()
    assert_problem(
        client_for(plain_user).post(f"{AGENTS}/{agent.pk}/interact", {"input": "x"}, format="json"), 409
    )


@pytest.mark.django_db
def test_idempotency_key_replays_the_same_run(client_for, developer, llm, deployed_agent):
    agent = deployed_agent()
    client = client_for(developer)
    url = f"{AGENTS}/{agent.pk}/interact"
    first = client.post(url, {"input": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    again = client.post(url, {"input": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    other = client.post(url, {"input": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="def")
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert len(llm.requests) == 2


@pytest.mark.django_db
def test_background_interact_is_202_and_can_be_polled(
    client_for, developer, llm, deployed_agent, django_capture_on_commit_callbacks
):
    agent = deployed_agent()
    llm.push(Reply.text("later"))
    client = client_for(developer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"{AGENTS}/{agent.pk}/interact", {"input": "x", "background": True}, format="json"
        )
    assert response.status_code == 202 and response.json()["status"] == "queued"
    polled = client.get(f"{AGENTS}/runs/{response.json()['id']}").json()
    assert polled["status"] == "succeeded" and polled["output"] == "later"


@pytest.mark.django_db
def test_cancel_endpoint(client_for, developer, other_developer, deployed_agent):
    from agents.runs import run_start

    agent = deployed_agent()
    run, _ = run_start(agent=agent, user=developer, input="x")
    assert_problem(client_for(other_developer).post(f"{AGENTS}/runs/{run.pk}/cancel"), 404)
    body = client_for(developer).post(f"{AGENTS}/runs/{run.pk}/cancel").json()
    assert body["status"] == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_stream_events_in_order(client_for, developer, llm, deployed_agent, builtin_tool):
    agent = deployed_agent(tools=[builtin_tool()])
    llm.push(Reply.tool_calls([("calculator", {"expression": "2+3"})]), Reply.text("five it is"))
    response = client_for(developer).post(
        f"{AGENTS}/{agent.pk}/interact",
        {"input": "2+3?", "stream": True},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = parse_sse(async_to_sync(collect)(response.streaming_content))
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "run.created" and names[-1] == "run.completed"
    assert names.index("tool_call.started") < names.index("tool_call.completed")
    deltas = "".join(data["content"] for name, data in events if name == "message.delta")
    assert deltas.split() == ["five", "it", "is"]
    assert events[-1][1]["status"] == "succeeded"
    run = AgentRun.objects.get()
    assert run.output == "five it is" and run.status == "succeeded"


def test_first_event_arrives_before_the_run_ends(live_server_url, developer, llm, deployed_agent, settings):
    from rest_framework_simplejwt.tokens import RefreshToken

    settings.AGENTS_STREAM_PING_SECONDS = 0.3
    agent = deployed_agent()
    llm.push(Reply.text("one two three four", chunk_delay=0.4))
    token = str(RefreshToken.for_user(developer).access_token)
    arrivals = []
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "POST",
            f"{live_server_url}{AGENTS}/{agent.pk}/interact",
            json={"input": "count", "stream": True},
            headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                arrivals.append((time.monotonic(), parse_sse(block.encode() + b"\n\n")[0][0]))
    names = [name for _, name in arrivals]
    assert names[0] == "run.created" and names[-1] == "run.completed"
    assert "ping" in names  # the stream kept talking while the model was slow
    first_delta = next(t for t, name in arrivals if name == "message.delta")
    assert arrivals[-1][0] - first_delta > 0.8  # deltas were sent as they came, not at the end
