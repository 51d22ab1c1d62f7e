"""Templates made from existing resources: a workflow (with its agents and tools as named
references, or included in a bundle) or an agent (with its tools).

Every id in the source becomes a reference by name, so the template carries no id and no
secret: a tool's `*secret_id` becomes {"$ref": "secret", "name": ...}, resolved against the
instantiating user's own secrets.
"""

import re
from typing import Any

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import has_object_action
from agents.models import Agent
from agents.services import AGENT_FIELDS
from masterdata.models import Secret
from tools.models import Tool
from tools.services import TOOL_FIELDS
from workflows.models import Workflow

from . import blueprint
from .services import template_create

ID_KEYS = {"agent_id": "agent", "tool_id": "tool", "model_id": "model", "workflow_id": "workflow"}


def _ref(kind: str, obj) -> dict:
    return {"$ref": kind, "name": obj.name}


def _local(key: str) -> dict:
    return {"$ref": blueprint.LOCAL, "key": key}


class _Builder:
    def __init__(self, actor, include: set[str]):
        self.actor = actor
        self.include = include
        self.resources: list[dict] = []
        self.keys: dict[tuple[str, Any], str] = {}

    def _key(self, kind: str, obj) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", obj.name).strip("_")[:56] or kind
        key, n = base, 2
        taken = {r["key"] for r in self.resources} | set(self.keys.values()) | {"workflow", "agent"}
        while key in taken:
            key, n = f"{base}_{n}", n + 1
        return key

    def _check_view(self, obj, label: str, field: str) -> None:
        if not has_object_action(self.actor, obj, "view"):
            raise ServiceValidationError(
                f"You may not read the {label} {obj.name} to include it.", field=field
            )

    def tool(self, tool: Tool, field: str) -> dict:
        if "tools" not in self.include:
            return _ref("tool", tool)
        if ("tool", tool.pk) not in self.keys:
            self._check_view(tool, "tool", field)
            key = self.keys[("tool", tool.pk)] = self._key("tool", tool)
            spec = {name: getattr(tool, name) for name in TOOL_FIELDS}
            spec["config"] = secrets_to_refs(spec["config"])
            self.resources.append({"key": key, "kind": "tool", "spec": spec})
        return _local(self.keys[("tool", tool.pk)])

    def agent(self, agent: Agent, field: str) -> dict:
        if "agents" not in self.include:
            return _ref("agent", agent)
        if ("agent", agent.pk) not in self.keys:
            self._check_view(agent, "agent", field)
            key = self.keys[("agent", agent.pk)] = self._key("agent", agent)
            self.resources.append({"key": key, "kind": "agent", "spec": self.agent_spec(agent)})
        return _local(self.keys[("agent", agent.pk)])

    def agent_spec(self, agent: Agent) -> dict:
        spec = {name: getattr(agent, name) for name in AGENT_FIELDS if name not in blueprint_m2m()}
        spec["model"] = _ref("model", agent.model)
        spec["prompt"] = _ref("prompt", agent.prompt) if agent.prompt_id else None
        spec["tools"] = [self.tool(t, "tools") for t in agent.tools.order_by("name")]
        spec["skills"] = [_ref("skill", s) for s in agent.skills.order_by("name")]
        spec["constraints"] = [_ref("constraint", c) for c in agent.constraints.order_by("name")]
        return spec

    def definition(self, value: Any, field: str) -> Any:
        """Ids in a workflow definition (nested bodies too) turned into references."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                kind = ID_KEYS.get(key)
                if kind and isinstance(item, str):
                    out[key] = self._id_ref(kind, item, f"{field}.{key}")
                elif key.endswith("secret_id") and isinstance(item, str) and item:
                    out[key] = _secret_ref(item)
                else:
                    out[key] = self.definition(item, f"{field}.{key}")
            return out
        if isinstance(value, list):
            return [self.definition(item, f"{field}[{i}]") for i, item in enumerate(value)]
        return value

    def _id_ref(self, kind: str, pk: str, field: str) -> dict:
        model = blueprint.ref_models()[kind]
        obj = model.objects.filter(pk=pk).first()
        if obj is None:
            raise ServiceValidationError(f"The {kind} {pk} no longer exists.", field=field)
        if kind == "agent":
            return self.agent(obj, field)
        if kind == "tool":
            return self.tool(obj, field)
        return _ref(kind, obj)


def blueprint_m2m() -> tuple[str, ...]:
    return ("model", "prompt", "tools", "skills", "constraints")


def _secret_ref(pk: str) -> dict:
    secret = Secret.objects.filter(pk=pk).first()
    if secret is None:
        raise ServiceValidationError(f"The secret {pk} no longer exists.", field="config")
    return {"$ref": "secret", "name": secret.name}


def secrets_to_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _secret_ref(v) if k.endswith("secret_id") and isinstance(v, str) and v else secrets_to_refs(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [secrets_to_refs(v) for v in value]
    return value


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value))


def _parameterize(definition: dict, items: list[dict]) -> dict:
    """Replace the value at each item's path with `{{ params.<name> }}`; the value becomes the
    parameter's default. Paths are dotted; `nodes.<id>` picks a node by its id."""
    properties: dict = {}
    for index, item in enumerate(items):
        field = f"parameterize[{index}].path"
        parts = item["path"].split(".")
        container: Any = definition
        for depth, part in enumerate(parts[:-1]):
            if isinstance(container, list) and parts[depth - 1] == "nodes":
                container = next((n for n in container if isinstance(n, dict) and n.get("id") == part), None)
            elif isinstance(container, dict):
                container = container.get(part)
            else:
                container = None
            if container is None:
                raise ServiceValidationError(f"Nothing at {'.'.join(parts[: depth + 1])}.", field=field)
        last = parts[-1]
        if not isinstance(container, dict) or last not in container:
            raise ServiceValidationError(f"Nothing at {item['path']}.", field=field)
        if item["name"] in properties:
            raise ServiceValidationError("Used twice.", field=f"parameterize[{index}].name")
        value = container[last]
        schema = {"default": value}
        if _json_type(value):
            schema["type"] = _json_type(value)
        if item.get("description"):
            schema["description"] = item["description"]
        properties[item["name"]] = schema
        container[last] = "{{ params." + item["name"] + " }}"
    return properties


def template_from_workflow(
    *,
    workflow: Workflow,
    actor,
    name: str,
    version: int | None = None,
    parameterize: list[dict] | None = None,
    include: list[str] | None = None,
    **metadata: Any,
):
    """A template of the workflow's definition (the given or current version)."""
    definition = workflow.definition
    if version is not None:
        chosen = workflow.versions.filter(version=version).first()
        if chosen is None:
            raise ServiceValidationError(f"The workflow has no version {version}.", field="version")
        definition = chosen.definition
    builder = _Builder(actor, set(include or []))
    definition = builder.definition(definition, "definition")
    spec: dict = {"name": workflow.name, "description": workflow.description, "definition": definition}
    if workflow.tags:
        spec["tags"] = list(workflow.tags)
    properties = _parameterize(spec["definition"], parameterize or [])
    resources = [*builder.resources, {"key": "workflow", "kind": "workflow", "spec": spec}]
    kind = "bundle" if builder.resources else "workflow"
    parameters = {"type": "object", "properties": properties} if properties else {}
    return template_create(
        owner=actor,
        name=name,
        kind=kind,
        body={"resources": resources},
        parameters=parameters,
        changelog=f"From workflow {workflow.name} v{version or workflow.version}.",
        **metadata,
    )


def template_from_agent(*, agent: Agent, actor, name: str, include: list[str] | None = None, **metadata: Any):
    """A template of the agent (its tools by name, or included in a bundle)."""
    builder = _Builder(actor, set(include or []))
    spec = builder.agent_spec(agent)
    resources = [*builder.resources, {"key": "agent", "kind": "agent", "spec": spec}]
    return template_create(
        owner=actor,
        name=name,
        kind="bundle" if builder.resources else "agent",
        body={"resources": resources},
        parameters={},
        changelog=f"From agent {agent.name}.",
        **metadata,
    )
