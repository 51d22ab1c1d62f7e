"""Data and broker helpers shared by the status, stats, alerts and dashboard tests."""

import itertools
from pathlib import Path

from agents.models import AgentRun, Conversation
from tests.agents.factories import make_agent
from workflows import services as workflow_services
from workflows.models import WorkflowExecution

_counter = itertools.count()


def make_run(owner, status: str, **fields) -> AgentRun:
    agent = fields.pop("agent", None) or make_agent(owner)
    conversation = Conversation.objects.create(agent=agent, user=owner, title="chat")
    return AgentRun.objects.create(
        agent=agent, agent_name=agent.name, conversation=conversation, user=owner, status=status, **fields
    )


def make_workflow(owner):
    return workflow_services.workflow_create(
        owner=owner,
        name=f"wf-{next(_counter)}",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "{{ 1 }}"}}]},
    )


def make_execution(owner, status: str, *, workflow=None, **fields) -> WorkflowExecution:
    workflow = workflow or make_workflow(owner)
    return WorkflowExecution.objects.create(workflow=workflow, user=owner, status=status, **fields)


def isolated_filesystem_broker(app, folder: Path) -> dict:
    """Point the Celery app at an empty filesystem broker under `folder` (no worker listens
    there); returns the previous configuration for `restore_broker`."""
    previous = {"url": app.conf.get("broker_write_url"), "options": app.conf.broker_transport_options}
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_write_url = "filesystem://"  # what the status probes connect to (the
    # broker_url setting yields to the CELERY_BROKER_URL environment variable)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.05,
    }
    _forget_pools(app)
    return previous


def restore_broker(app, previous: dict) -> None:
    app.conf.broker_write_url = previous["url"]
    app.conf.broker_transport_options = previous["options"]
    _forget_pools(app)


def _forget_pools(app) -> None:
    """The app's connection and producer pools are made from the configuration on first use,
    and worker broadcasts publish through them: forget them when the broker changes (kombu
    keeps one pool per broker URL and options, so the right one is found again)."""
    app._pool = None
    app.amqp._producer_pool = None
