"""Every write to agents: create/update with references checked against what the owner may
use, and deploy, which runs the checks and freezes what passed into an immutable version.

A deployed version's snapshot is all the runtime reads (agents.runtime); later edits of the
agent, its prompt or its tools do not change a deployed version.
"""

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail, ValidationError

from agentmesh.core import crypto, sandbox
from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import has_object_action
from agentmesh.core.services import object_delete_keeping_history
from agentmesh.core.signals import snapshot as row_snapshot
from masterdata.constraints import effective_limits, first_schema_error
from masterdata.models import ModelConfig, Prompt
from masterdata.providers import PROVIDERS
from masterdata.services import (
    SecretAccessDenied,
    check_json_schema,
    ensure_unique_per_owner,
    prompt_render,
    secret_reveal,
)
from observability.services import event_record
from tools.models import ToolStatus

from .models import Agent, AgentStatus, AgentVersion
from .selectors import unfinished_runs

# What callers may set, in display order (the API serializer and the admin form use it too).
AGENT_FIELDS = (
    "name",
    "description",
    "model",
    "prompt",
    "prompt_variables",
    "system_prompt",
    "tools",
    "skills",
    "constraints",
    "memory",
    "response_format",
    "parameters",
)
M2M_FIELDS = ("tools", "skills", "constraints")
NAME_MAX_CHARS = Agent._meta.get_field("name").max_length
MAX_PROMPT_VARIABLES = 100

MEMORY_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_messages": {"type": "integer", "minimum": 1, "maximum": 500},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
    },
}
PARAMETERS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
    },
}
RESPONSE_FORMAT_TYPES = ("text", "json_schema")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str = ""

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "message": self.message}


class DeployFailed(ServiceValidationError):
    """A deploy whose checks did not all pass: one error per failed check
    (`checks.<name>`, code `check_failed`); `checks` is the whole report."""

    def __init__(self, checks: list[Check]):
        self.checks = [c.as_dict() for c in checks]
        failed = [c for c in checks if not c.ok]
        ValidationError.__init__(
            self,
            {f"checks.{c.name}": [ErrorDetail(c.message, code="check_failed")] for c in failed},
            code="check_failed",
        )
        names = ", ".join(c.name for c in failed)
        self.summary = f"The agent failed {len(failed)} deploy check(s): {names}."


# --- create / update ------------------------------------------------------------------------
def _check_usable(owner, obj, field: str, label: str) -> None:
    if obj is not None and not has_object_action(owner, obj, "use"):
        raise ServiceValidationError(f"No usable {label} with this id.", field=field)


def _check_usable_many(owner, objects, field: str, label: str) -> None:
    for obj in objects:
        if not has_object_action(owner, obj, "use"):
            raise ServiceValidationError(f"No usable {label} with id {obj.pk}.", field=field)


def normalize_response_format(value: Any) -> dict:
    if value in (None, {}):
        return {"type": "text"}
    if not isinstance(value, dict):
        raise ServiceValidationError("An object.", field="response_format")
    kind = value.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise ServiceValidationError(
            f"type must be one of: {', '.join(RESPONSE_FORMAT_TYPES)}.", field="response_format.type"
        )
    allowed = {"type"} if kind == "text" else {"type", "schema"}
    extra = sorted(set(value) - allowed)
    if extra:
        raise ServiceValidationError(f"Unexpected key for type {kind}.", field=f"response_format.{extra[0]}")
    if kind == "text":
        return {"type": "text"}
    schema = value.get("schema")
    if not isinstance(schema, dict) or not schema:
        raise ServiceValidationError(
            "A JSON Schema object is required.", field="response_format.schema", code="required"
        )
    check_json_schema(schema, "response_format.schema")
    return {"type": "json_schema", "schema": schema}


def _check_object(value: Any, schema: dict, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ServiceValidationError("An object.", field=field)
    error = first_schema_error(schema, value, root=field)
    if error is not None:
        raise ServiceValidationError(str(error), field=error.field)
    return value


def _validate_agent(agent: Agent, *, changed: set[str], m2m: dict[str, list]) -> None:
    """Check the whole agent; references that changed must be usable by the owner."""
    owner = agent.owner
    agent.name = (agent.name or "").strip()
    if not agent.name:
        raise ServiceValidationError("The name may not be empty.", field="name", code="required")
    if len(agent.name) > NAME_MAX_CHARS:
        raise ServiceValidationError(f"At most {NAME_MAX_CHARS} characters.", field="name")
    ensure_unique_per_owner(agent, "name")
    if agent.model_id is None or not isinstance(agent.model, ModelConfig):
        raise ServiceValidationError("A model config is required.", field="model", code="required")
    if "model" in changed:
        _check_usable(owner, agent.model, "model", "model")
    if agent.prompt is not None and not isinstance(agent.prompt, Prompt):
        raise ServiceValidationError("A prompt.", field="prompt")
    if "prompt" in changed:
        _check_usable(owner, agent.prompt, "prompt", "prompt")
    if agent.system_prompt:
        try:
            sandbox.validate_template(agent.system_prompt)
        except sandbox.TemplateProblem as exc:
            raise ServiceValidationError(str(exc), field="system_prompt") from exc
    agent.prompt_variables = _check_object(agent.prompt_variables, {"type": "object"}, "prompt_variables")
    if len(agent.prompt_variables) > MAX_PROMPT_VARIABLES:
        raise ServiceValidationError(f"At most {MAX_PROMPT_VARIABLES} variables.", field="prompt_variables")
    agent.memory = _check_object(agent.memory, MEMORY_SCHEMA, "memory")
    agent.response_format = normalize_response_format(agent.response_format)
    agent.parameters = _check_object(agent.parameters, PARAMETERS_SCHEMA, "parameters")
    max_tokens, window = agent.parameters.get("max_tokens"), agent.model.context_window
    if max_tokens and window and max_tokens > window:
        raise ServiceValidationError(
            f"max_tokens cannot exceed the model's context window ({window}).", field="parameters.max_tokens"
        )
    labels = {"tools": "tool", "skills": "skill", "constraints": "constraint"}
    for field, objects in m2m.items():
        current = set(getattr(agent, field).values_list("pk", flat=True)) if agent.pk else set()
        _check_usable_many(owner, [o for o in objects if o.pk not in current], field, labels[field])


def _split_fields(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list]]:
    unknown = set(fields) - set(AGENT_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected agent fields: {sorted(unknown)}")
    m2m = {name: list(fields.pop(name) or []) for name in M2M_FIELDS if name in fields}
    return fields, m2m


@transaction.atomic
def agent_create(*, owner, name: str, model: ModelConfig, **fields: Any) -> Agent:
    fields, m2m = _split_fields(dict(fields))
    agent = Agent(owner=owner, name=name, model=model, **fields)
    _validate_agent(agent, changed={"model", *fields}, m2m=m2m)
    agent.save()
    for field, objects in m2m.items():
        getattr(agent, field).set(objects)
    audited("create", agent, changes=_m2m_ids(m2m))
    return agent


def _m2m_ids(m2m: dict[str, list]) -> dict[str, list[str]]:
    return {field: sorted(str(obj.pk) for obj in objects) for field, objects in m2m.items()}


@transaction.atomic
def agent_update(*, agent: Agent, **fields: Any) -> Agent:
    """Update the editable definition. A deployed version is untouched: deploy again to
    freeze the changes into a new one."""
    fields, m2m = _split_fields(dict(fields))
    agent = (
        Agent.objects.select_for_update(of=("self",))
        .select_related("owner", "model", "prompt")
        .get(pk=agent.pk)
    )
    before = row_snapshot(agent)
    changed = set()
    for field, value in fields.items():
        if field in ("model", "prompt"):
            if getattr(value, "pk", None) != getattr(agent, f"{field}_id"):
                changed.add(field)
        elif getattr(agent, field) != value:
            changed.add(field)
        setattr(agent, field, value)
    _validate_agent(agent, changed=changed, m2m=m2m)
    agent.save()
    for field, objects in m2m.items():
        getattr(agent, field).set(objects)
    audited("update", agent, before=before, changes=_m2m_ids(m2m))
    return agent


# --- deploy ---------------------------------------------------------------------------------
def _check_model(agent: Agent) -> Check:
    model = agent.model
    if not model.is_active:
        return Check("model", False, f"The model {model.name} is not active.")
    if not has_object_action(agent.owner, model, "use"):
        return Check("model", False, f"The owner may no longer use the model {model.name}.")
    return Check("model", True, f"{model.provider}:{model.model_name}")


def _check_api_key(agent: Agent) -> Check:
    model = agent.model
    spec = PROVIDERS.get(model.provider)
    needed = spec is not None and "api_key_secret" in spec.required_fields
    secret = model.api_key_secret
    if secret is None:
        if needed:
            return Check("model_api_key", False, f"The {spec.label} provider needs an API key secret.")
        return Check("model_api_key", True, "No API key needed.")
    try:
        # The model's owner authorised the reference; it must still hold and the value decrypt.
        secret_reveal(secret=secret, actor=model.owner, purpose=f"agent {agent.pk} deploy check")
    except SecretAccessDenied:
        return Check("model_api_key", False, f"The model's owner may no longer use the secret {secret.name}.")
    except crypto.DecryptionError:
        return Check("model_api_key", False, f"The secret {secret.name} does not decrypt with any key.")
    return Check("model_api_key", True, f"Secret {secret.name} ({secret.mask}).")


def _check_tools(agent: Agent, tools: list, actor) -> Check:
    problems = []
    for tool in tools:
        if tool.status != ToolStatus.DEPLOYED:
            problems.append(f"{tool.name} is not deployed ({tool.status})")
        elif not has_object_action(agent.owner, tool, "use"):
            problems.append(f"the owner may not use {tool.name}")
        elif actor is not None and not has_object_action(actor, tool, "use"):
            problems.append(f"you may not use {tool.name}")
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"two tools share the name {duplicates[0]}")
    if problems:
        return Check("tools", False, "; ".join(problems) + ".")
    return Check("tools", True, f"{len(tools)} tool(s) deployed and usable.")


def _prompt_defaults(prompt: Prompt | None) -> dict:
    if prompt is None:
        return {}
    return {spec["name"]: spec["default"] for spec in prompt.variables or [] if "default" in spec}


def _check_system_prompt(agent: Agent) -> Check:
    prompt = agent.prompt
    try:
        if prompt is not None:
            if not prompt.is_active:
                return Check("system_prompt", False, f"The prompt {prompt.name} is not active.")
            if not has_object_action(agent.owner, prompt, "use"):
                return Check("system_prompt", False, f"The owner may no longer use the prompt {prompt.name}.")
            prompt_render(prompt=prompt, variables=agent.prompt_variables or {})
            return Check("system_prompt", True, f"Prompt {prompt.name} v{prompt.version} renders.")
        if agent.system_prompt:
            sandbox.render(agent.system_prompt, agent.prompt_variables or {})
            return Check("system_prompt", True, "The inline system prompt renders.")
    except ServiceValidationError as exc:
        field, messages = next(iter(exc.detail.items()))
        return Check("system_prompt", False, f"{field}: {messages[0]}")
    except sandbox.TemplateProblem as exc:
        return Check("system_prompt", False, str(exc))
    return Check("system_prompt", True, "No system prompt.")


def _check_constraints(agent: Agent, constraints: list, tools: list, limits: dict) -> Check:
    problems = []
    unusable = [c.name for c in constraints if not has_object_action(agent.owner, c, "use")]
    if unusable:
        problems.append(f"the owner may no longer use {', '.join(unusable)}")
    names = {t.name for t in tools}
    allowed, denied = limits.get("allowed_tools"), set(limits.get("denied_tools") or [])
    if names and allowed is not None and not names & set(allowed):
        problems.append("allowed_tools excludes every tool of the agent")
    elif names and names <= denied:
        problems.append("denied_tools denies every tool of the agent")
    if any(not term.strip() for term in limits.get("blocked_terms") or []):
        problems.append("blocked_terms contains a blank term (it would block every input)")
    if problems:
        return Check("constraints", False, "; ".join(problems) + ".")
    active = sum(1 for c in constraints if c.is_active)
    return Check("constraints", True, f"{active} active constraint(s) consistent.")


def _check_memory(agent: Agent) -> Check:
    max_tokens, window = (agent.memory or {}).get("max_tokens"), agent.model.context_window
    if max_tokens and window and window < max_tokens:
        return Check(
            "memory",
            False,
            f"memory.max_tokens ({max_tokens}) exceeds the model's context window ({window}).",
        )
    if max_tokens and window:
        return Check("memory", True, f"memory.max_tokens fits the context window ({window}).")
    return Check("memory", True, "No token window to compare.")


def _snapshot(agent: Agent, tools: list, skills: list, limits: dict) -> dict:
    prompt = agent.prompt
    memory = agent.memory or {}
    return {
        "agent": {"id": str(agent.pk), "name": agent.name},
        "model_config_id": str(agent.model_id),
        "system_prompt": prompt.template if prompt is not None else agent.system_prompt,
        "prompt": {"id": str(prompt.pk), "version": prompt.version} if prompt is not None else None,
        "prompt_variables": {**_prompt_defaults(prompt), **(agent.prompt_variables or {})},
        "tools": [
            {
                "id": str(t.pk),
                "name": t.name,
                "version": t.version,
                "description": t.description,
                "parameters_schema": t.parameters_schema,
            }
            for t in tools
        ],
        "skills": [{"id": str(s.pk), "name": s.name, "description": s.description} for s in skills],
        "limits": limits,
        "memory": {"max_messages": memory.get("max_messages"), "max_tokens": memory.get("max_tokens")},
        "response_format": normalize_response_format(agent.response_format),
        "parameters": {**(agent.model.default_parameters or {}), **(agent.parameters or {})},
    }


def agent_deploy(*, agent: Agent, actor) -> tuple[AgentVersion | None, list[Check]]:
    """Run the deploy checks; when all pass, freeze the agent into version n+1 and make it
    the deployed one. Otherwise nothing changes and (None, checks) comes back."""
    agent = Agent.objects.select_related("owner", "model__api_key_secret", "model__owner", "prompt").get(
        pk=agent.pk
    )
    tools = list(agent.tools.order_by("name", "pk"))
    skills = list(agent.skills.order_by("name", "pk"))
    constraints = list(agent.constraints.order_by("name", "pk"))
    limits = effective_limits(constraints)
    checks = [
        _check_model(agent),
        _check_api_key(agent),
        _check_tools(agent, tools, actor),
        _check_system_prompt(agent),
        _check_constraints(agent, constraints, tools, limits),
        _check_memory(agent),
    ]
    if not all(c.ok for c in checks):
        event_record(
            type="agent.deploy_failed",
            level="warning",
            source="agents",
            actor=actor,
            resource=agent,
            payload={"failed": [c.name for c in checks if not c.ok]},
        )
        return None, checks
    snapshot = _snapshot(agent, tools, skills, limits)
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        before = row_snapshot(locked)
        number = (locked.versions.aggregate(n=Max("version"))["n"] or 0) + 1
        version = AgentVersion.objects.create(
            agent=locked,
            version=number,
            snapshot=snapshot,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        locked.status = AgentStatus.DEPLOYED
        locked.deployed_version = version
        locked.deployed_at = timezone.now()
        locked.save(update_fields=["status", "deployed_version", "deployed_at", "updated_at"])
        audited("deploy", locked, before=before, actor=actor, details={"version": number})
    event_record(
        type="agent.deployed", source="agents", actor=actor, resource=agent, payload={"version": number}
    )
    return version, checks


@transaction.atomic
def agent_undeploy(*, agent: Agent, actor) -> Agent:
    """Stop new interactions (runs already going finish); the versions stay for the record."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.status == AgentStatus.DEPLOYED:
        before = row_snapshot(agent)
        agent.status = AgentStatus.UNDEPLOYED
        agent.save(update_fields=["status", "updated_at"])
        audited("undeploy", agent, before=before, actor=actor)
        event_record(
            type="agent.undeployed",
            source="agents",
            actor=actor,
            resource=agent,
            payload={"version": agent.deployed_version.version if agent.deployed_version else None},
        )
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    """Delete the agent and its versions; its runs and conversations stay, readable by their
    users (and admins), with the agent's name and version number they ran with. Refused (409)
    while a run is queued or running: cancel it or let it finish first."""
    object_delete_keeping_history(
        instance=agent,
        unfinished=unfinished_runs,
        what="queued or running run(s)",
        advice="cancel them or let them finish first",
    )


def parse_days(value: str | None, *, default: int = 30) -> int:
    if value in (None, ""):
        return default
    # Up to 3 ASCII digits: str.isdigit() admits "²", and int() refuses 4301+ digits (500s).
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or not 1 <= int(value) <= 365:
        raise ServiceValidationError("A whole number of days from 1 to 365.", field="days")
    return int(value)
