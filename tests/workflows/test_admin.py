"""The workflow pages of the operator console: an execution's story (steps inline, children,
trace), the actions that call the services (cancel, retry, approve, reject, execute), history
that cannot be edited, and search that finds runs by id, node and type."""

import re

import pytest

from observability.models import ObservabilityEvent
from workflows import services
from workflows.models import ExecutionStatus, StepExecution, WorkflowExecution, WorkflowStatus

from .conftest import linear, transform

pytestmark = pytest.mark.django_db

EXECUTIONS = "/admin/workflows/workflowexecution/"
STEPS = "/admin/workflows/stepexecution/"
WORKFLOWS = "/admin/workflows/workflow/"
CITY = linear(
    transform("a", "{{ inputs.city }}"),
    transform("b", {"city": "{{ steps.a.output }}", "html": "<b>bold</b>"}),
    inputs={"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
)


def approval(node_id="ok", **config):
    return {"id": node_id, "type": "approval", "config": config}


@pytest.fixture
def run(engine):
    """Runs a callable with the engine's tasks executed when its transaction commits."""
    return engine.run


def audit(action: str, obj) -> ObservabilityEvent:
    events = list(ObservabilityEvent.objects.filter(type=f"audit.{action}", resource_id=str(obj.pk)))
    assert len(events) == 1, [(e.type, e.payload) for e in events]
    return events[0]


def buttons(html: str) -> set[str]:
    return set(re.findall(r'class="object-action action-([a-z_]+)"', html))


# --- the story --------------------------------------------------------------------------------
def test_a_finished_execution_shows_its_steps_in_order_with_pretty_data_and_trace_links(
    operator, make_workflow, engine
):
    execution = engine.execute(make_workflow(CITY), {"city": "Oslo"})
    assert execution.status == ExecutionStatus.SUCCEEDED
    WorkflowExecution.objects.filter(pk=execution.pk).update(duration_ms=7914.103000075556)
    html = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    node_ids = re.findall(r'<td class="field-node_id">\s*<p>(\w+)</p>', html)
    assert node_ids == ["a", "b"]
    assert "7.9 s" in html and "7.914103000075556" not in html
    assert '<details class="json"' in html and "&quot;city&quot;: &quot;Oslo&quot;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # escaped
    assert execution.trace_id
    assert f"/admin/observability/span/?trace_id={execution.trace_id}" in html
    assert f"/admin/observability/observabilityevent/?trace_id={execution.trace_id}" in html
    assert (
        "/admin/observability/observabilityevent/?resource_type=workflows.workflowexecution"
        f"&amp;resource_id={execution.pk}" in html
    )
    # the linked lists answer and filter by the trace
    spans = operator.get(f"/admin/observability/span/?trace_id={execution.trace_id}")
    assert spans.status_code == 200
    assert spans.context["cl"].result_count >= 1
    assert all(s.trace_id == execution.trace_id for s in spans.context["cl"].result_list)


def test_lists_show_short_ids_with_the_full_id_on_hover_and_human_costs(operator, make_workflow, engine):
    execution = engine.execute(make_workflow(CITY), {"city": "Oslo"})
    html = operator.get(EXECUTIONS).content.decode()
    full = str(execution.pk)
    assert f'title="{full}"' in html and f">{full[:8]}<" in html
    assert f">{full}<" not in html
    assert "0.00000000" not in html
    step_list = operator.get(STEPS).content.decode()
    assert f'title="{full}"' in step_list  # the step's execution, short


def test_the_executions_a_step_started_are_linked_both_ways(operator, make_workflow, engine):
    child = make_workflow(linear(approval()), name="child")
    parent = make_workflow(
        linear({"id": "call", "type": "workflow", "config": {"workflow_id": str(child.pk)}})
    )
    execution = engine.execute(parent)
    assert execution.status == ExecutionStatus.WAITING
    child_run = WorkflowExecution.objects.get(workflow=child)
    html = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    assert f'href="{EXECUTIONS}{child_run.pk}/change/"' in html
    child_html = operator.get(f"{EXECUTIONS}{child_run.pk}/change/").content.decode()
    assert f'href="{EXECUTIONS}{execution.pk}/change/"' in child_html  # its parent
    step = StepExecution.objects.get(execution=execution, node_id="call")
    assert (
        f'href="{EXECUTIONS}{child_run.pk}/change/"'
        in operator.get(f"{STEPS}{step.pk}/change/").content.decode()
    )


# --- actions ----------------------------------------------------------------------------------
def test_cancel_from_the_admin_through_a_confirmation_page(operator, make_workflow, engine, run):
    execution = engine.execute(make_workflow(linear(approval(), transform("after", 1))))
    assert execution.status == ExecutionStatus.WAITING
    page = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    assert buttons(page) == {"cancel", "approve", "reject"}
    confirm_url = f"{EXECUTIONS}{execution.pk}/do/cancel/"
    assert f'href="{confirm_url}" class="object-action action-cancel"' in page
    confirmation = operator.get(confirm_url).content.decode()
    assert re.search(r'<input type="submit" name="confirm"', confirmation)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.WAITING  # GET only asks

    response = run(operator.post, confirm_url, {"confirm": "Yes"})
    assert response.status_code == 302 and response["Location"] == f"{EXECUTIONS}{execution.pk}/change/"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.CANCELLED
    event = audit("cancel", execution)
    assert event.payload["channel"] == "admin" and event.actor_id == operator.user.pk
    after = operator.get(response["Location"]).content.decode()
    assert re.search(r'<div class="readonly">cancelled</div>', after)
    assert buttons(after) == {"retry"}  # cancel, approve and reject no longer apply
    assert operator.get(confirm_url).status_code == 404


def test_retry_goes_to_the_new_execution(operator, make_workflow, engine, run):
    execution = engine.execute(make_workflow(linear(approval())))
    services.execution_cancel(execution=execution, actor=None)
    response = run(operator.post, f"{EXECUTIONS}{execution.pk}/do/retry/", {"confirm": "Yes"})
    retry = WorkflowExecution.objects.get(retry_of=execution)
    assert response.status_code == 302 and response["Location"] == f"{EXECUTIONS}{retry.pk}/change/"
    event = audit("retry", execution)
    assert event.payload["channel"] == "admin" and event.payload["retry_id"] == str(retry.pk)


@pytest.mark.parametrize(("action", "final"), [("approve", "succeeded"), ("reject", "failed")])
def test_approve_or_reject_the_waiting_step(operator, make_workflow, engine, run, action, final):
    execution = engine.execute(make_workflow(linear(approval(message="Ship <v2>?"), transform("after", 1))))
    url = f"{EXECUTIONS}{execution.pk}/do/{action}/"
    confirmation = operator.get(url).content.decode()
    assert 'name="comment"' in confirmation
    assert "the step ok (attempt 1): “Ship &lt;v2&gt;?”" in confirmation  # which step, escaped
    response = run(operator.post, url, {"confirm": "Yes", "comment": "checked by ops"})
    assert response.status_code == 302
    execution.refresh_from_db()
    assert execution.status == final
    event = audit(action, execution)
    assert event.payload["channel"] == "admin" and event.payload["comment"] == "checked by ops"
    assert (
        StepExecution.objects.get(execution=execution, node_id="ok").state["decided_by"]
        == operator.user.username
    )


def test_actions_that_do_not_apply_are_not_offered(operator, make_workflow, engine):
    execution = engine.execute(make_workflow(CITY), {"city": "Oslo"})
    page = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    assert buttons(page) == set()
    for action in ("cancel", "retry", "approve", "reject"):
        assert (
            operator.post(f"{EXECUTIONS}{execution.pk}/do/{action}/", {"confirm": "Yes"}).status_code == 404
        )


def test_a_staff_developer_may_not_act(staff_developer, make_workflow, engine):
    workflow = make_workflow(linear(approval()))
    execution = engine.execute(workflow)
    for action in ("cancel", "approve", "reject"):
        url = f"{EXECUTIONS}{execution.pk}/do/{action}/"
        assert staff_developer.get(url).status_code == 403
        assert staff_developer.post(url, {"confirm": "Yes"}).status_code == 403
    assert staff_developer.post(f"{WORKFLOWS}{workflow.pk}/do/execute/", {"inputs": "{}"}).status_code == 403
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.WAITING
    assert WorkflowExecution.objects.count() == 1


def test_bulk_cancel_from_the_list(operator, make_workflow, engine, run):
    workflow = make_workflow(linear(approval()))
    waiting = [engine.execute(workflow) for _ in range(2)]
    response = run(
        operator.post,
        EXECUTIONS,
        {"action": "cancel_selected", "_selected_action": [str(e.pk) for e in waiting]},
    )
    assert response.status_code == 302
    assert set(WorkflowExecution.objects.values_list("status", flat=True)) == {"cancelled"}
    assert all(audit("cancel", e).payload["channel"] == "admin" for e in waiting)


# --- execute ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ("{not json", "Enter a valid JSON."),
        ('"Oslo"', "A JSON object"),
        ("{}", "inputs.city"),
        ('{"city": 3}', "inputs.city"),
    ],
)
def test_execute_shows_invalid_inputs_on_the_form(operator, make_workflow, inputs, error):
    workflow = make_workflow(CITY)
    url = f"{WORKFLOWS}{workflow.pk}/do/execute/"
    page = operator.get(url).content.decode()
    assert 'name="inputs"' in page and "&quot;required&quot;" in page  # the schema is shown
    response = operator.post(url, {"confirm": "Yes", "inputs": inputs})
    assert response.status_code == 200
    form = response.context["form"]
    assert error in " ".join(form.errors.get("inputs", [])), form.errors
    assert 'class="errorlist' in response.content.decode()
    assert not WorkflowExecution.objects.exists()


def test_execute_starts_an_execution_and_opens_its_page(operator, make_workflow, run):
    workflow = make_workflow(CITY)
    page = operator.get(f"{WORKFLOWS}{workflow.pk}/change/").content.decode()
    assert "execute" in buttons(page)
    response = run(
        operator.post,
        f"{WORKFLOWS}{workflow.pk}/do/execute/",
        {"confirm": "Yes", "inputs": '{"city": "Oslo"}'},
    )
    execution = WorkflowExecution.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{EXECUTIONS}{execution.pk}/change/"
    assert execution.user == operator.user and execution.inputs == {"city": "Oslo"}
    event = audit("execute", execution)
    assert event.payload["channel"] == "admin" and event.payload["workflow_id"] == str(workflow.pk)
    services.workflow_update(workflow=workflow, status=WorkflowStatus.ARCHIVED)
    assert "execute" not in buttons(operator.get(f"{WORKFLOWS}{workflow.pk}/change/").content.decode())


# --- history ------------------------------------------------------------------------------------
def test_executions_and_steps_are_append_only(operator, make_workflow, engine):
    execution = engine.execute(make_workflow(CITY), {"city": "Oslo"})
    step = execution.steps.first()
    for base, obj in ((EXECUTIONS, execution), (STEPS, step)):
        assert operator.get(f"{base}add/").status_code == 403
        assert operator.get(f"{base}{obj.pk}/delete/").status_code == 403
        assert operator.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
        detail = operator.get(f"{base}{obj.pk}/change/")
        assert detail.status_code == 200
        assert 'name="_save"' not in detail.content.decode()  # read-only
        assert operator.post(f"{base}{obj.pk}/change/", {"status": "failed"}).status_code == 403
        assert 'value="delete_selected"' not in operator.get(base).content.decode()
        response = operator.post(base, {"action": "delete_selected", "_selected_action": [str(obj.pk)]})
        assert response.status_code in (200, 302)
    assert WorkflowExecution.objects.filter(pk=execution.pk, status="succeeded").exists()
    assert StepExecution.objects.filter(pk=step.pk).exists()


# --- search and filters -------------------------------------------------------------------------
def results(client, url: str) -> list:
    response = client.get(url)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_search_and_filters_find_the_right_rows(operator, make_workflow, engine, run):
    first = engine.execute(make_workflow(CITY, name="cities"), {"city": "Oslo"})
    second = engine.execute(make_workflow(linear(approval("gate")), name="gated"))
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q={first.pk}")] == [first.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q={str(second.pk)[:8]}")] == [second.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?q=gated")] == [second.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?status__exact=waiting")] == [second.pk]
    assert [e.pk for e in results(operator, f"{EXECUTIONS}?workflow__id__exact={first.workflow_id}")] == [
        first.pk
    ]
    assert len(results(operator, f"{EXECUTIONS}?created_at__gte=2000-01-01T00:00:00%2B00:00")) == 2

    by_run = results(operator, f"{STEPS}?q={first.pk}")
    assert {s.node_id for s in by_run} == {"a", "b"}
    assert [s.node_id for s in results(operator, f"{STEPS}?q=gate")] == ["gate"]
    assert [s.node_id for s in results(operator, f"{STEPS}?q=approval")] == ["gate"]  # node type
    assert {s.node_id for s in results(operator, f"{STEPS}?node_type__exact=transform")} == {"a", "b"}
    assert [s.node_id for s in results(operator, f"{STEPS}?status__exact=waiting")] == ["gate"]


def test_deleting_a_workflow_takes_its_versions_and_keeps_its_executions(operator, make_workflow, engine):
    workflow = make_workflow(CITY, name="short-lived")
    execution = engine.execute(workflow, {"city": "Oslo"})
    url = f"{WORKFLOWS}{workflow.pk}/delete/"
    assert "Cannot delete" not in operator.get(url).content.decode()
    assert operator.post(url, {"post": "yes"}).status_code == 302
    execution.refresh_from_db()
    assert execution.workflow_id is None and execution.workflow_name == "short-lived"
    assert audit("delete", workflow).payload["channel"] == "admin"


def test_pages_do_not_query_per_row(operator, make_workflow, engine):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert operator.get(url).status_code == 200
        return len(ctx.captured_queries)

    child = make_workflow(linear(approval()), name="child")
    workflow = make_workflow(
        linear(
            {"id": "call", "type": "workflow", "config": {"workflow_id": str(child.pk)}}, transform("t", 1)
        )
    )
    first = engine.execute(workflow)
    pages = [EXECUTIONS, STEPS, f"{EXECUTIONS}{first.pk}/change/"]
    [queries(url) for url in pages]  # warm the per-process caches (content types)
    before = [queries(url) for url in pages]
    for _ in range(5):
        engine.execute(workflow)
    assert [queries(url) for url in pages] == before
    # a longer run (more steps, more children) costs no more queries either
    quick = make_workflow(linear(transform("x", 1)), name="quick")
    each = {"items": [1, 2, 3], "workflow": {"workflow_id": str(quick.pk)}}
    longer = make_workflow(
        linear(
            {"id": "more", "type": "map", "config": each},
            *[transform(f"t{i}", i) for i in range(6)],
            {"id": "call", "type": "workflow", "config": {"workflow_id": str(child.pk)}},
        )
    )
    long_run = engine.execute(longer)
    assert long_run.steps.count() == 8
    assert WorkflowExecution.objects.filter(parent_step__execution=long_run).count() == 4
    assert queries(f"{EXECUTIONS}{long_run.pk}/change/") == before[2], before


def test_long_runs_keep_the_page_small_and_link_the_rest(operator, make_workflow, engine, monkeypatch):
    from workflows import admin as workflows_admin

    monkeypatch.setattr(workflows_admin, "STEPS_SHOWN", 2)
    monkeypatch.setattr(workflows_admin, "CHILDREN_SHOWN", 1)
    child = make_workflow(linear(transform("x", 1)), name="child")
    workflow = make_workflow(
        linear(
            {
                "id": "each",
                "type": "map",
                "config": {"items": [1, 2, 3], "workflow": {"workflow_id": str(child.pk)}},
            },
            transform("t1", 1),
            transform("t2", 2),
        )
    )
    execution = engine.execute(workflow)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    html = operator.get(f"{EXECUTIONS}{execution.pk}/change/").content.decode()
    assert re.findall(r'<td class="field-node_id">\s*<p>(\w+)</p>', html) == ["each", "t1"]
    assert f"{STEPS}?execution__id__exact={execution.pk}" in html and "3 step(s)" in html
    step = StepExecution.objects.get(execution=execution, node_id="each")
    more = f"{EXECUTIONS}?parent_step__id__exact={step.pk}"
    assert f'href="{more}">all 3</a>' in html
    assert len(results(operator, more)) == 3
    assert len(results(operator, f"{STEPS}?execution__id__exact={execution.pk}")) == 3
