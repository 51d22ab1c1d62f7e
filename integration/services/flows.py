"""Cross-domain flows: an agent from a template, an agent and the workflow that uses it deployed
in one step, and batch creates. Each one calls the owning apps' services (which audit every
write); nothing here creates a row itself."""

import copy
from contextlib import nullcontext
from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework.exceptions import PermissionDenied, ValidationError

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import codename, is_admin
from agents import services as agent_services
from agents.api.serializers import AgentSerializer
from agents.models import Agent
from templates_app import services as template_services
from templates_app.models import Template, TemplateKind
from workflows import services as workflow_services
from workflows.api.serializers import WorkflowSerializer
from workflows.models import Workflow

__all__ = [
    "AGENT_PLACEHOLDER",
    "agent_from_template",
    "agent_workflow_deploy",
    "batch_create",
    "require_create_role",
]

# An agent node whose `agent_id` is missing or this value is pinned to the flow's agent.
AGENT_PLACEHOLDER = "$agent"
BATCH_KINDS = {
    "agents": (Agent, AgentSerializer),
    "workflows": (Workflow, WorkflowSerializer),
}


def require_create_role(user, model) -> None:
    """The caller's role must allow creating `model` (a plain user's does not)."""
    if is_admin(user):
        return
    if not user.has_perm(f"{model._meta.app_label}.{codename(model, 'add')}"):
        raise PermissionDenied(f"Your role may not create {model._meta.verbose_name_plural}.")


def _prefixed(detail: Any, prefix: str) -> dict:
    if isinstance(detail, dict):
        return {
            f"{prefix}.{key}" if key != "non_field_errors" else prefix: value for key, value in detail.items()
        }
    return {prefix: detail}


def _deploy_or_fail(agent: Agent, actor) -> tuple[Agent, Any, list]:
    version, checks = agent_services.agent_deploy(agent=agent, actor=actor)
    if version is None:
        raise agent_services.DeployFailed(checks)
    agent.refresh_from_db()
    return agent, version, checks


# --- agent from template -----------------------------------------------------------------------
@transaction.atomic
def agent_from_template(
    *,
    template: Template,
    actor,
    version: Any = None,
    params: Any = None,
    name: str = "",
    deploy: bool = False,
) -> tuple[Agent, list | None]:
    """Instantiate an agent template (templates_app's instantiate: one implementation) and,
    with `deploy`, deploy the agent; a failed check raises DeployFailed and nothing stays.
    Only templates of kind agent: a bundle creates several resources (use its instantiate)."""
    if template.kind != TemplateKind.AGENT:
        raise ServiceValidationError(
            f"A template of kind agent (this one is {template.kind}; instantiate it under /templates).",
            field="template",
            code="wrong_kind",
        )
    chosen = template_services.pick_version(template, version)
    key = chosen.body["resources"][0]["key"]
    _, instances = template_services.template_instantiate(
        template=template,
        actor=actor,
        version=chosen.number,
        params=params,
        names={key: name} if name else None,
    )
    agent = Agent.objects.get(pk=instances[0].resource_id)
    checks = None
    if deploy:
        agent, _, checks = _deploy_or_fail(agent, actor)
    return agent, checks


# --- agent + workflow ------------------------------------------------------------------------
def _validated(serializer_class, data: dict, *, instance=None, field: str) -> dict:
    serializer = serializer_class(instance, data=data, partial=instance is not None)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as exc:
        raise ValidationError(_prefixed(exc.detail, field)) from exc
    return dict(serializer.validated_data)


def _pin(definition: Any, agent_id: str) -> Any:
    """Point the workflow's agent node(s) at the agent: nodes without `agent_id` or with
    "$agent"; failing those, the only agent node. Several other agent nodes: 400."""
    if not isinstance(definition, dict) or not isinstance(definition.get("nodes"), list):
        return definition  # the workflow service names what is wrong
    definition = copy.deepcopy(definition)
    agent_nodes = [n for n in definition["nodes"] if isinstance(n, dict) and n.get("type") == "agent"]
    pinned = False
    for node in agent_nodes:
        config = node.setdefault("config", {})
        if isinstance(config, dict) and config.get("agent_id") in (None, "", AGENT_PLACEHOLDER):
            config["agent_id"] = agent_id
            pinned = True
        elif isinstance(config, dict) and config.get("agent_id") == agent_id:
            pinned = True
    if not pinned:
        if len(agent_nodes) != 1 or not isinstance(agent_nodes[0].get("config"), dict):
            raise ServiceValidationError(
                f'No agent node to pin: give one agent node "agent_id": "{AGENT_PLACEHOLDER}".',
                field="workflow.definition",
                code="no_agent_node",
            )
        agent_nodes[0]["config"]["agent_id"] = agent_id
    return definition


@transaction.atomic
def agent_workflow_deploy(
    *,
    actor,
    agent: Agent | None = None,
    agent_data: dict | None = None,
    workflow: Workflow | None = None,
    workflow_data: dict | None = None,
) -> dict:
    """Create or update the agent, deploy it, then create or update the workflow with its agent
    node(s) pinned to the agent — all or nothing. `agent`/`workflow` are existing objects the
    caller may change (the view checks that), `*_data` the fields to create (no object) or to
    update (with one). A failed deploy check raises DeployFailed: everything rolls back."""
    created = {"agent": agent is None, "workflow": workflow is None}
    if agent is None:
        require_create_role(actor, Agent)
        agent = agent_services.agent_create(
            owner=actor, **_validated(AgentSerializer, agent_data or {}, field="agent")
        )
    elif agent_data:
        agent = agent_services.agent_update(
            agent=agent, **_validated(AgentSerializer, agent_data, instance=agent, field="agent")
        )
    agent, version, checks = _deploy_or_fail(agent, actor)

    if workflow is None:
        require_create_role(actor, Workflow)
        data = dict(workflow_data or {})
        data["definition"] = _pin(data.get("definition"), str(agent.pk))
        workflow = workflow_services.workflow_create(
            owner=actor, actor=actor, **_validated(WorkflowSerializer, data, field="workflow")
        )
    else:
        data = dict(workflow_data or {})
        data["definition"] = _pin(data.get("definition", workflow.definition), str(agent.pk))
        fields = _validated(WorkflowSerializer, data, instance=workflow, field="workflow")
        workflow = workflow_services.workflow_update(workflow=workflow, actor=actor, **fields)
    return {
        "agent": agent,
        "workflow": workflow,
        "version": version.version,
        "checks": [c.as_dict() for c in checks],
        "created": created,
    }


# --- batch -----------------------------------------------------------------------------------
def _create_one(kind: str, owner, item: Any) -> Agent | Workflow:
    model, serializer_class = BATCH_KINDS[kind]
    if not isinstance(item, dict):
        raise ValidationError({"non_field_errors": ["An object."]})
    serializer = serializer_class(data=item)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    if model is Agent:
        return agent_services.agent_create(owner=owner, **data)
    return workflow_services.workflow_create(owner=owner, actor=owner, **data)


def batch_create(*, kind: str, owner, items: list, atomic: bool = False) -> list[dict]:
    """Create each item through the kind's create service (validated by the create endpoint's
    serializer, audited like a single create). Results in order: {index, status: 201, id} or
    {index, status: 400, errors: {field: [...]}}, fields under `items[<index>]`.
    `atomic`: all or none — any failure raises one ValidationError listing every failing item."""
    model, _ = BATCH_KINDS[kind]
    require_create_role(owner, model)
    if len(items) > settings.INTEGRATION_BATCH_MAX_ITEMS:
        raise ServiceValidationError(
            f"At most {settings.INTEGRATION_BATCH_MAX_ITEMS} items per call.",
            field="items",
            code="max_length",
        )
    results: list[dict] = []
    with transaction.atomic() if atomic else nullcontext():
        for index, item in enumerate(items):
            try:
                with transaction.atomic():  # a failed item leaves nothing of itself
                    obj = _create_one(kind, owner, item)
            except ValidationError as exc:
                results.append(
                    {"index": index, "status": 400, "errors": _prefixed(exc.detail, f"items[{index}]")}
                )
            else:
                results.append({"index": index, "status": 201, "id": obj.pk})
        failed = [r for r in results if r["status"] != 201]
        if atomic and failed:
            errors: dict = {}
            for result in failed:
                errors.update(result["errors"])
            raise ValidationError(errors)
    return results
