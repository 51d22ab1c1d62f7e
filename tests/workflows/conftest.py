import itertools

import pytest

from tests.workflows import handlers  # noqa: F401  registers the test node types
from workflows import services
from workflows.models import WorkflowExecution


def linear(*nodes: dict, **extra) -> dict:
    """A definition running `nodes` one after the other."""
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": list(nodes), "edges": edges, **extra}


def transform(node_id: str, template, **extra) -> dict:
    return {"id": node_id, "type": "transform", "config": {"template": template}, **extra}


@pytest.fixture
def make_workflow(developer):
    def make(definition: dict, *, owner=None, name=None) -> object:
        owner = owner or developer
        name = name or f"wf-{WorkflowExecution.objects.count()}-{id(definition)}"
        return services.workflow_create(owner=owner, name=name, definition=definition)

    return make


@pytest.fixture(autouse=True)
def _reset_test_nodes():
    handlers.CALLS.clear()


@pytest.fixture
def engine(django_capture_on_commit_callbacks, developer):
    """Drives the engine in this process: tasks run eagerly when the service's transaction
    "commits" (captured on-commit callbacks, including those the tasks register)."""

    class Engine:
        def run(self, fn, *args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                result = fn(*args, **kwargs)
            if isinstance(result, WorkflowExecution):
                result.refresh_from_db()  # what the tasks run at "commit" did to it
            return result

        def execute(self, workflow, inputs=None, *, user=None, **kwargs) -> WorkflowExecution:
            execution, _ = self.run(
                services.workflow_execute,
                workflow=workflow,
                user=user or developer,
                inputs=inputs or {},
                **kwargs,
            )
            execution.refresh_from_db()
            return execution

    return Engine()


def steps_of(execution) -> dict:
    """{node_id: latest attempt} of an execution."""
    latest = {}
    for step in execution.steps.order_by("attempt", "created_at"):
        latest[step.node_id] = step
    return latest
