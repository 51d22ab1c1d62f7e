"""`/api/v1/workflows` and `/api/v1/workflows/executions`."""

import json

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from tests.api_base import OwnedResourceAPITests, assert_problem
from tests.workflows.conftest import linear, transform
from workflows import services
from workflows.models import Workflow, WorkflowExecution, WorkflowVersion

SIMPLE = linear(transform("a", "{{ inputs.n }}"), outputs={"n": "{{ steps.a.output }}"})
APPROVAL = linear({"id": "ok", "type": "approval", "config": {}}, transform("after", 1))
CITY = linear(
    transform("a", "{{ inputs.city }}"),
    inputs={"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
)


class TestWorkflowAPI(OwnedResourceAPITests):
    basename = "workflows-api:workflow"
    model = Workflow
    create_payload = {"name": "wf1", "description": "first", "definition": SIMPLE}
    update_payload = {"name": "wf2", "description": "second", "definition": linear(transform("b", 2))}
    invalid_payload = (
        {"name": "bad", "definition": {"nodes": [{"id": "a", "type": "nope"}]}},
        "definition.nodes[0].type",
    )

    def make_object(self, owner):
        return services.workflow_create(owner=owner, name=f"wf-{Workflow.objects.count()}", definition=SIMPLE)


def url(name, *args):
    return reverse(f"workflows-api:{name}", args=args)


@pytest.fixture
def workflow(developer):
    return services.workflow_create(owner=developer, name="main", definition=SIMPLE)


# --- definitions and versions --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "x", "definition": "nodes"}, "definition"),
        ({"name": "x"}, "definition"),
        ({"name": "", "definition": SIMPLE}, "name"),
        (
            {
                "name": "x",
                "definition": {"nodes": [transform("a", 1)], "edges": [{"source": "a", "target": "b"}]},
            },
            "definition.edges[0].target",
        ),
        ({"name": "x", "definition": SIMPLE, "status": "flying"}, "status"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(client_for, developer, payload, field):
    assert_problem(client_for(developer).post(url("workflow-list"), payload, format="json"), 400, field)
    assert not Workflow.objects.exists()


def test_duplicate_name_is_400(client_for, developer, workflow):
    response = client_for(developer).post(
        url("workflow-list"), {"name": "main", "definition": SIMPLE}, format="json"
    )
    assert_problem(response, 400, "name")


def test_each_definition_change_is_a_new_immutable_version(client_for, developer, workflow):
    client = client_for(developer)
    detail = url("workflow-detail", workflow.pk)
    assert client.patch(detail, {"description": "only text"}, format="json").json()["version"] == 1
    changed = linear(transform("a", "v2"))
    body = client.patch(detail, {"definition": changed}, format="json").json()
    assert body["version"] == 2 and body["definition"] == changed
    assert (
        client.patch(detail, {"definition": changed}, format="json").json()["version"] == 2
    )  # same: no version
    versions = client.get(url("workflow-versions", workflow.pk)).json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["definition"] == SIMPLE and versions[1]["created_by"] == developer.username
    with pytest.raises(ValueError, match="immutable"):
        WorkflowVersion.objects.get(workflow=workflow, version=1).save()


def test_invalid_update_leaves_the_workflow_and_versions_alone(client_for, developer, workflow):
    response = client_for(developer).patch(
        url("workflow-detail", workflow.pk),
        {"definition": {"nodes": [transform("a", "{{ x")]}},
        format="json",
    )
    assert_problem(response, 400, "definition.nodes[0].config.template")
    workflow.refresh_from_db()
    assert workflow.definition == SIMPLE and workflow.versions.count() == 1


# --- execute -------------------------------------------------------------------------------------
def test_execute_async_is_202_and_runs(client_for, developer, django_capture_on_commit_callbacks):
    definition = linear(
        {"id": "a", "type": "test_flaky", "config": {}}, outputs={"n": "{{ steps.a.output.attempt }}"}
    )
    workflow = services.workflow_create(owner=developer, name="worker-step", definition=definition)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(developer).post(
            url("workflow-execute", workflow.pk), {"inputs": {"n": 4}}, format="json"
        )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "running" and body["version"] == 1 and body["steps"][0]["node_id"] == "a"
    assert body["steps"][0]["status"] == "queued"  # sent to a worker, run after the answer
    execution = WorkflowExecution.objects.get(pk=body["id"])
    assert execution.status == "succeeded" and execution.outputs == {"n": 1}
    detail = client_for(developer).get(url("execution-detail", execution.pk)).json()
    assert detail["status"] == "succeeded" and detail["steps"][0]["output"] == {"attempt": 1}


def test_execute_async_of_pure_nodes_is_202_and_already_done(client_for, developer, workflow):
    """Transform, condition and output steps are evaluated where the run advances, not by a worker."""
    response = client_for(developer).post(
        url("workflow-execute", workflow.pk), {"inputs": {"n": 4}}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["status"], body["outputs"], body["steps"][0]["status"]) == (
        "succeeded",
        {"n": 4},
        "succeeded",
    )


@pytest.mark.django_db(transaction=True)
def test_execute_sync_waits_for_the_end(client_for, developer):
    workflow = services.workflow_create(owner=developer, name="sync", definition=SIMPLE)
    response = client_for(developer).post(
        url("workflow-execute", workflow.pk), {"inputs": {"n": 9}, "mode": "sync"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "succeeded" and response.json()["outputs"] == {"n": 9}


@pytest.mark.django_db(transaction=True)
def test_execute_sync_answers_202_when_the_run_waits(client_for, developer):
    workflow = services.workflow_create(owner=developer, name="sync-wait", definition=APPROVAL)
    response = client_for(developer).post(
        url("workflow-execute", workflow.pk), {"mode": "sync", "wait_seconds": 0.2}, format="json"
    )
    assert response.status_code == 202 and response.json()["status"] == "waiting"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"inputs": {}}, "inputs.city"),
        ({"inputs": {"city": 3}}, "inputs.city"),
        ({"inputs": "Paris"}, "inputs"),
        ({"inputs": {"city": "Paris"}, "mode": "later"}, "mode"),
        ({"inputs": {"city": "Paris"}, "version": 7}, "version"),
        ({"inputs": {"city": "Paris"}, "version": "one"}, "version"),
    ],
)
def test_execute_rejects_bad_input_naming_the_field(client_for, developer, payload, field):
    workflow = services.workflow_create(owner=developer, name="city", definition=CITY)
    response = client_for(developer).post(url("workflow-execute", workflow.pk), payload, format="json")
    assert_problem(response, 400, field)
    assert not WorkflowExecution.objects.exists()


def test_execute_with_the_same_idempotency_key_returns_the_first(client_for, developer, workflow):
    client = client_for(developer)
    first = client.post(
        url("workflow-execute", workflow.pk), {"inputs": {"n": 1}}, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    again = client.post(
        url("workflow-execute", workflow.pk), {"inputs": {"n": 2}}, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert first.json()["id"] == again.json()["id"]
    assert WorkflowExecution.objects.count() == 1


def test_archived_workflow_does_not_execute(client_for, developer, workflow):
    client = client_for(developer)
    client.patch(url("workflow-detail", workflow.pk), {"status": "archived"}, format="json")
    assert_problem(client.post(url("workflow-execute", workflow.pk), {}, format="json"), 409)


def test_shared_for_use_may_execute_but_not_edit(client_for, developer, plain_user, workflow):
    client_for(developer).post(
        url("workflow-share", workflow.pk), {"users": [plain_user.username], "actions": ["use"]}
    )
    client = client_for(plain_user)
    assert (
        client.post(url("workflow-execute", workflow.pk), {"inputs": {"n": 1}}, format="json").status_code
        == 202
    )
    assert_problem(
        client.patch(url("workflow-detail", workflow.pk), {"description": "x"}, format="json"), 403
    )


def test_view_only_share_may_not_execute(client_for, developer, other_developer, workflow):
    client_for(developer).post(
        url("workflow-share", workflow.pk), {"users": [other_developer.username], "actions": ["view"]}
    )
    assert_problem(
        client_for(other_developer).post(url("workflow-execute", workflow.pk), {}, format="json"), 403
    )


def test_another_users_workflow_and_executions_are_404(
    client_for, developer, other_developer, workflow, engine
):
    execution = engine.execute(workflow, {"n": 1})
    other = client_for(other_developer)
    for name in ("workflow-execute", "workflow-versions", "workflow-executions", "workflow-stats"):
        method = other.post if name == "workflow-execute" else other.get
        assert_problem(method(url(name, workflow.pk)), 404)
    for name in ("execution-detail",):
        assert_problem(other.get(url(name, execution.pk)), 404)
    for name in ("execution-cancel", "execution-approve", "execution-reject", "execution-retry"):
        assert_problem(other.post(url(name, execution.pk)), 404)
    assert other.get(url("execution-list")).json()["results"] == []


# --- executions ----------------------------------------------------------------------------------
def test_executions_of_a_workflow_with_filters(client_for, developer, workflow, engine):
    done = engine.execute(workflow, {"n": 1})
    waiting_wf = services.workflow_create(owner=developer, name="waits", definition=APPROVAL)
    waiting = engine.execute(waiting_wf)
    client = client_for(developer)
    body = client.get(url("workflow-executions", workflow.pk)).json()
    assert [e["id"] for e in body["results"]] == [str(done.pk)]
    assert client.get(url("workflow-executions", workflow.pk) + "?status=failed").json()["results"] == []
    assert_problem(client.get(url("workflow-executions", workflow.pk) + "?status=nope"), 400, "status")
    everything = {e["id"] for e in client.get(url("execution-list")).json()["results"]}
    assert everything == {str(done.pk), str(waiting.pk)}
    only_waiting = client.get(url("execution-list") + "?status=waiting").json()["results"]
    assert [e["id"] for e in only_waiting] == [str(waiting.pk)]


def test_cancel_then_cancel_again_is_409(client_for, developer, engine):
    workflow = services.workflow_create(owner=developer, name="waits", definition=APPROVAL)
    execution = engine.execute(workflow)
    client = client_for(developer)
    response = client.post(url("execution-cancel", execution.pk))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert {s["status"] for s in response.json()["steps"]} == {"cancelled"}
    assert_problem(client.post(url("execution-cancel", execution.pk)), 409)


def test_approve_and_reject(client_for, developer, engine, django_capture_on_commit_callbacks):
    workflow = services.workflow_create(owner=developer, name="waits", definition=APPROVAL)
    client = client_for(developer)
    first, second = engine.execute(workflow), engine.execute(workflow)
    assert_problem(
        client.post(url("execution-approve", first.pk), {"node_id": "after"}, format="json"), 400, "node_id"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("execution-approve", first.pk), {"comment": "fine"}, format="json")
    assert response.status_code == 200
    first.refresh_from_db()
    assert first.status == "succeeded"
    response = client.post(url("execution-reject", second.pk), {"comment": "no"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "failed"
    assert_problem(client.post(url("execution-approve", second.pk)), 409)


def test_only_the_runner_or_editors_control_an_execution(client_for, developer, plain_user, engine):
    workflow = services.workflow_create(owner=developer, name="waits", definition=APPROVAL)
    client_for(developer).post(
        url("workflow-share", workflow.pk), {"users": [plain_user.username], "actions": ["use"]}
    )
    theirs = engine.execute(workflow, user=developer)
    mine = engine.execute(workflow, user=plain_user)
    client = client_for(plain_user)
    # Sharing the workflow does not share other users' executions: not even visible.
    assert_problem(client.post(url("execution-cancel", theirs.pk)), 404)
    assert client.post(url("execution-cancel", mine.pk)).status_code == 200


def test_retry_endpoint(client_for, developer, engine):
    workflow = services.workflow_create(
        owner=developer,
        name="flaky",
        definition=linear({"id": "f", "type": "test_flaky", "config": {"fail_times": 1}}),
    )
    failed = engine.execute(workflow)
    assert failed.status == "failed"
    client = client_for(developer)
    response = client.post(url("execution-retry", failed.pk))
    assert response.status_code == 202 and response.json()["retry_of"] == str(failed.pk)
    assert_problem(
        client.post(url("execution-retry", response.json()["id"])), 409
    )  # not failed (yet/any more)


def test_delete_is_refused_while_a_run_is_active(client_for, developer, engine):
    workflow = services.workflow_create(owner=developer, name="waits", definition=APPROVAL)
    execution = engine.execute(workflow)
    client = client_for(developer)
    assert_problem(client.delete(url("workflow-detail", workflow.pk)), 409)
    client.post(url("execution-cancel", execution.pk))
    response = client.delete(url("workflow-detail", workflow.pk))
    assert response.status_code == 204, response.json()
    kept = WorkflowExecution.objects.get(pk=execution.pk)  # history outlives the workflow
    assert kept.workflow_id is None and kept.workflow_name == "waits" and kept.status == "cancelled"


def test_stats(client_for, developer, engine):
    workflow = services.workflow_create(
        owner=developer,
        name="mixed",
        definition=linear({"id": "f", "type": "test_flaky", "config": {"fail_times": 1}}),
    )
    engine.execute(workflow)  # fails (first call)
    engine.execute(workflow)  # succeeds
    client = client_for(developer)
    body = client.get(url("workflow-stats", workflow.pk)).json()
    assert body["executions"] == 2
    assert body["by_status"] == {"failed": 1, "succeeded": 1}
    assert body["step_failures"] == [{"node_id": "f", "failures": 1, "timeouts": 0}]
    assert body["duration_ms"]["p50"] is not None
    assert body["input_tokens"] == 3 and body["output_tokens"] == 4
    assert_problem(client.get(url("workflow-stats", workflow.pk) + "?days=0"), 400, "days")


NASTY_DEFINITIONS = [
    None,
    7,
    {"nodes": None},
    {"nodes": [None]},
    {"nodes": [{"id": "a", "type": "transform", "config": []}]},
    {"nodes": [{"id": "a", "type": ["transform"]}]},
    {"nodes": [{"id": "a", "type": "condition", "config": {"branches": [{"label": "x", "when": {"a": 1}}]}}]},
    {"nodes": [transform("a", 1)], "edges": [{"source": 1, "target": None}]},
    {"nodes": [transform("a", 1)], "edges": "a->b"},
    {
        "nodes": [
            {
                "id": "w",
                "type": "workflow",
                "config": {"workflow_id": "00000000-0000-0000-0000-000000000000", "version": 10**30},
            }
        ]
    },
    {
        "nodes": [
            {
                "id": "m",
                "type": "map",
                "config": {"items": [1], "node": {"type": "map", "config": {"items": 5, "node": 1}}},
            }
        ]
    },
    {"nodes": [transform("a", "{% for i in range(10**9) %}x{% endfor %}")], "outputs": {"x": None}},
    {"nodes": [transform("a", 1)], "inputs": {"$ref": "https://example.com/schema.json"}},
    {"nodes": [transform("a", {"deep": [[[[[[[[[[{"x": "{{ inputs }}"}]]]]]]]]]]})], "start": 5},
]


@pytest.mark.parametrize("definition", NASTY_DEFINITIONS)
def test_no_definition_is_a_500(client_for, developer, definition):
    response = client_for(developer).post(
        url("workflow-list"), {"name": "nasty", "definition": definition}, format="json"
    )
    assert response.status_code < 500, response.content[:300]  # a 400, or 201 for the odd valid one


@pytest.mark.parametrize(
    "payload",
    [
        {"version": 10**30},
        {"wait_seconds": 10**30, "mode": "sync"},
        {"inputs": None},
        {"inputs": {"a": [1, {"b": None}]}, "mode": ["sync"]},
        [],
        "text",
    ],
)
def test_no_execute_payload_is_a_500(client_for, developer, workflow, payload):
    response = client_for(developer).post(url("workflow-execute", workflow.pk), payload, format="json")
    assert 400 <= response.status_code < 500, response.content[:300]


def test_a_runaway_template_fails_the_step_in_the_sandbox(developer, engine):
    definition = linear(transform("a", "{% for i in range(10**9) %}x{% endfor %}"))
    execution = engine.execute(services.workflow_create(owner=developer, name="loop", definition=definition))
    assert execution.status == "failed" and "sandbox" in execution.error


def test_unresolvable_input_schema_is_a_400_at_execute(client_for, developer):
    definition = linear(transform("a", 1), inputs={"$ref": "#/definitions/missing"})
    workflow = services.workflow_create(owner=developer, name="ref", definition=definition)
    response = client_for(developer).post(url("workflow-execute", workflow.pk), {"inputs": {}}, format="json")
    assert_problem(response, 400, "inputs")


async def _collect(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def _parse_sse(raw: bytes) -> list[dict]:
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.strip().splitlines() if ": " in line)
        if "event" in lines:
            events.append({"id": lines["id"], "event": lines["event"], "data": json.loads(lines["data"])})
    return events


@pytest.mark.django_db(transaction=True)
def test_events_stream_and_reattach_with_last_event_id(client_for, developer, other_developer):
    definition = linear(
        {
            "id": "f",
            "type": "test_flaky",
            "config": {"fail_times": 1},
            "retry": {"max_attempts": 2, "backoff": 0},
        },
        transform("b", 2),
    )
    workflow = services.workflow_create(owner=developer, name="events", definition=definition)
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    client = client_for(developer)
    response = client.get(url("execution-events", execution.pk), HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = _parse_sse(async_to_sync(_collect)(response.streaming_content))
    names = [(e["event"], e["data"].get("node_id"), e["data"].get("status")) for e in events]
    assert names == [
        ("execution.started", None, None),
        ("step.started", "f", None),
        ("step.finished", "f", "failed"),
        ("step.retried", "f", None),
        ("step.started", "f", None),
        ("step.finished", "f", "succeeded"),
        ("step.started", "b", None),
        ("step.finished", "b", "succeeded"),
        ("execution.finished", None, "succeeded"),
    ]
    assert len({e["id"] for e in events}) == len(events)
    again = client.get(
        url("execution-events", execution.pk),
        HTTP_ACCEPT="text/event-stream",
        HTTP_LAST_EVENT_ID=events[5]["id"],
    )
    rest = _parse_sse(async_to_sync(_collect)(again.streaming_content))
    assert rest == events[6:]
    assert_problem(client_for(other_developer).get(url("execution-events", execution.pk)), 404)


def test_events_arrive_while_the_run_waits(live_server_url, developer, settings):
    """Over ASGI the stream sends each event as it happens: the waiting step is seen before
    anyone approves, and the stream ends after execution.finished."""
    from rest_framework_simplejwt.tokens import RefreshToken

    settings.AGENTS_STREAM_PING_SECONDS = 0.3
    workflow = services.workflow_create(owner=developer, name="live", definition=APPROVAL)
    execution, _ = services.workflow_execute(workflow=workflow, user=developer)
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(developer).access_token}"}
    seen: list[str] = []
    with (
        httpx.Client(timeout=20) as client,
        client.stream(
            "GET",
            f"{live_server_url}/api/v1/workflows/executions/{execution.pk}/events",
            headers={**headers, "Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.status_code == 200
        buffer, approved = "", None
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                seen.extend(e["event"] for e in _parse_sse(block.encode() + b"\n\n"))
                # approve once, and only once the client saw the step wait (a ping block may follow)
                if approved is None and seen and seen[-1] == "step.waiting":
                    approved = client.post(
                        f"{live_server_url}/api/v1/workflows/executions/{execution.pk}/approve",
                        json={},
                        headers=headers,
                    )
                    assert approved.status_code == 200
    assert seen[:3] == ["execution.started", "step.started", "step.waiting"]
    assert seen[-1] == "execution.finished"
    assert "step.finished" in seen
