"""Validation of a workflow definition, and the graph helpers the scheduler uses.

A definition:

    {"nodes": [{"id": "fetch", "type": "tool", "name": "Fetch", "config": {...},
                "retry": {"max_attempts": 3, "backoff": 1, "max_delay": 30},
                "timeout_seconds": 60, "on_error": "fail" | "continue" | "branch"}, ...],
     "edges": [{"source": "fetch", "target": "check"},
               {"source": "check", "target": "big", "branch": "big"},
               {"source": "fetch", "target": "alert", "branch": "error"},
               {"source": "a", "target": "b", "condition": "{{ steps.a.output.ok }}"}],
     "inputs": {<JSON Schema of the inputs>},
     "outputs": {"answer": "{{ steps.big.output }}"},
     "start": "fetch",           # default: the first node
     "timeout_seconds": 3600}    # the whole run

Every error names its place, e.g. `definition.nodes[3].config.agent_id` or `definition.edges[0].target`.
The graph is acyclic: repetition is a `loop` node (its body repeats inside the node), so every
node runs at most once per execution (plus its retries). Every node is reachable from the start.
"""

import json
from collections import deque
from typing import Any

from django.conf import settings

from agentmesh.core.exceptions import ServiceValidationError
from masterdata.constraints import first_schema_error
from masterdata.services import check_json_schema

from . import expressions
from .nodes import DefinitionInvalid, registry

ROOT = "definition"
NODE_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
ERROR_BRANCH = "error"
ON_ERROR = ("fail", "continue", "branch")

DEFINITION_SCHEMA = {
    "type": "object",
    "required": ["nodes"],
    "additionalProperties": False,
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": NODE_ID_PATTERN},
                    "type": {"type": "string"},
                    "name": {"type": "string", "maxLength": 200},
                    "description": {"type": "string", "maxLength": 2000},
                    "config": {"type": "object"},
                    "retry": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "max_attempts": {"type": "integer", "minimum": 1},
                            "backoff": {"type": "number", "minimum": 0, "maximum": 3600},
                            "max_delay": {"type": "number", "minimum": 0, "maximum": 86400},
                        },
                    },
                    "timeout_seconds": {"type": "integer", "minimum": 1},
                    "on_error": {"enum": list(ON_ERROR)},
                    "position": {"type": "object"},
                },
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["source", "target"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "maxLength": 100},
                    "source": {"type": "string"},
                    "target": {"type": "string"},
                    "branch": {"type": "string", "maxLength": 64},
                    "condition": {"type": ["string", "boolean"]},
                },
            },
        },
        "inputs": {"type": "object"},
        "outputs": {"type": "object"},
        "start": {"type": "string"},
        "timeout_seconds": {"type": "integer", "minimum": 1},
    },
}


def _invalid(message: str, field: str) -> ServiceValidationError:
    return ServiceValidationError(message, field=field)


def check_node_config(node: dict, *, owner, workflow, field: str, inline_only: bool = False) -> None:
    """The node's type exists, its config matches the type's schema and passes its checks."""
    node_type = node.get("type")
    if node_type not in registry:
        raise _invalid(f"Unknown node type; one of: {', '.join(registry.types())}.", f"{field}.type")
    handler = registry.get(node_type)
    if inline_only and not handler.inline:
        inline = ", ".join(t for t in registry.types() if registry.get(t).inline)
        raise _invalid(f"Only these node types may be a body: {inline}.", f"{field}.type")
    config = node.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _invalid("An object.", f"{field}.config")
    error = first_schema_error(handler.config_schema, config, root=f"{field}.config")
    if error is not None:
        raise _invalid(str(error), error.field)
    try:
        handler.check(config, owner=owner, workflow=workflow)
    except DefinitionInvalid as exc:
        raise _invalid(str(exc), f"{field}.config.{exc.field}" if exc.field else f"{field}.config") from exc
    except ServiceValidationError as exc:  # a nested body: already a full path
        raise exc


def start_node(definition: dict) -> str:
    return definition.get("start") or definition["nodes"][0]["id"]


def validate_definition(definition: Any, *, owner, workflow=None) -> dict:
    """Return the definition when it is valid; raise ServiceValidationError naming the culprit."""
    if not isinstance(definition, dict):
        raise _invalid("An object with nodes and edges.", ROOT)
    size = len(json.dumps(definition, default=str))
    if size > settings.WORKFLOWS_MAX_DEFINITION_BYTES:
        raise _invalid(f"At most {settings.WORKFLOWS_MAX_DEFINITION_BYTES} bytes of JSON.", ROOT)
    if isinstance(definition.get("nodes"), list) and len(definition["nodes"]) > settings.WORKFLOWS_MAX_NODES:
        raise _invalid(f"At most {settings.WORKFLOWS_MAX_NODES} nodes.", f"{ROOT}.nodes")
    if isinstance(definition.get("edges"), list) and len(definition["edges"]) > settings.WORKFLOWS_MAX_EDGES:
        raise _invalid(f"At most {settings.WORKFLOWS_MAX_EDGES} edges.", f"{ROOT}.edges")
    error = first_schema_error(DEFINITION_SCHEMA, definition, root=ROOT)
    if error is not None:
        raise _invalid(str(error), error.field)
    nodes: list[dict] = definition["nodes"]
    edges: list[dict] = definition.get("edges") or []

    # nodes: unique ids, known types, per-type config, limits
    index_of: dict[str, int] = {}
    for i, node in enumerate(nodes):
        field = f"{ROOT}.nodes[{i}]"
        if node["id"] in index_of:
            raise _invalid(f"Duplicate node id {node['id']!r}.", f"{field}.id")
        index_of[node["id"]] = i
        check_node_config(node, owner=owner, workflow=workflow, field=field)
        attempts = (node.get("retry") or {}).get("max_attempts", 1)
        if attempts > settings.WORKFLOWS_MAX_ATTEMPTS:
            raise _invalid(f"At most {settings.WORKFLOWS_MAX_ATTEMPTS}.", f"{field}.retry.max_attempts")
        timeout = node.get("timeout_seconds")
        if timeout is not None and timeout > settings.WORKFLOWS_MAX_STEP_TIMEOUT_SECONDS:
            raise _invalid(
                f"At most {settings.WORKFLOWS_MAX_STEP_TIMEOUT_SECONDS}.", f"{field}.timeout_seconds"
            )
    run_timeout = definition.get("timeout_seconds")
    if run_timeout is not None and run_timeout > settings.WORKFLOWS_MAX_RUN_TIMEOUT_SECONDS:
        raise _invalid(f"At most {settings.WORKFLOWS_MAX_RUN_TIMEOUT_SECONDS}.", f"{ROOT}.timeout_seconds")

    # edges: known ends, branches the source offers, conditions that parse
    outgoing: dict[str, list[int]] = {node["id"]: [] for node in nodes}
    incoming: dict[str, list[int]] = {node["id"]: [] for node in nodes}
    for j, edge in enumerate(edges):
        field = f"{ROOT}.edges[{j}]"
        for end in ("source", "target"):
            if edge[end] not in index_of:
                raise _invalid(f"No node with id {edge[end]!r}.", f"{field}.{end}")
        if edge["source"] == edge["target"]:
            raise _invalid("An edge may not point at its own source; use a loop node.", f"{field}.target")
        source = nodes[index_of[edge["source"]]]
        handler = registry.get(source["type"])
        labels = handler.branches(source.get("config") or {})
        branch = edge.get("branch")
        if branch == ERROR_BRANCH and source.get("on_error") == "branch":
            pass  # taken when the source fails for good
        elif branch == ERROR_BRANCH and not labels:
            raise _invalid('An "error" branch needs on_error "branch" on its source.', f"{field}.branch")
        elif labels:
            if branch not in labels:
                raise _invalid(
                    f"Edges out of a {source['type']} node need a branch: one of {', '.join(sorted(labels))}.",
                    f"{field}.branch",
                )
        elif branch is not None:
            raise _invalid(f"The {source['type']} node {source['id']!r} has no branches.", f"{field}.branch")
        if "condition" in edge and (problem := expressions.check(edge["condition"])):
            raise _invalid(problem, f"{field}.condition")
        outgoing[edge["source"]].append(j)
        incoming[edge["target"]].append(j)
    for i, node in enumerate(nodes):
        if node.get("on_error") == "branch" and not any(
            edges[j].get("branch") == ERROR_BRANCH for j in outgoing[node["id"]]
        ):
            raise _invalid(
                'on_error "branch" needs an edge with branch "error".', f"{ROOT}.nodes[{i}].on_error"
            )

    # start, reachability, no cycles
    start = start_node(definition)
    if start not in index_of:
        raise _invalid(f"No node with id {start!r}.", f"{ROOT}.start")
    if incoming[start]:
        raise _invalid(
            "The start node may not have incoming edges.", f"{ROOT}.edges[{incoming[start][0]}].target"
        )
    seen, queue = {start}, deque([start])
    while queue:
        for j in outgoing[queue.popleft()]:
            target = edges[j]["target"]
            if target not in seen:
                seen.add(target)
                queue.append(target)
    for i, node in enumerate(nodes):
        if node["id"] not in seen:
            raise _invalid(
                f"The node {node['id']!r} is not reachable from the start node {start!r}.",
                f"{ROOT}.nodes[{i}]",
            )
    cycle = find_cycle(nodes, edges)
    if cycle:
        path = " -> ".join(cycle)
        raise _invalid(
            f"The graph has a cycle ({path}); repeat work with a loop node instead.",
            f"{ROOT}.nodes[{index_of[cycle[0]]}]",
        )

    # inputs schema and outputs mapping
    check_json_schema(definition.get("inputs"), f"{ROOT}.inputs")
    for name, expression in (definition.get("outputs") or {}).items():
        if problem := expressions.check(expression):
            raise _invalid(problem, f"{ROOT}.outputs.{name}")
    return definition


def find_cycle(nodes: list[dict], edges: list[dict]) -> list[str] | None:
    """A cycle as a list of node ids (first repeated at the end), or None."""
    graph: dict[str, list[str]] = {node["id"]: [] for node in nodes}
    for edge in edges:
        graph[edge["source"]].append(edge["target"])
    color: dict[str, int] = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for root in graph:
        if color[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        color[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(graph[node]):
                stack[-1] = (node, i + 1)
                nxt = graph[node][i]
                if color[nxt] == 1:
                    return [*path[path.index(nxt) :], nxt]
                if color[nxt] == 0:
                    color[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = 2
                stack.pop()
                path.pop()
    return None


class Graph:
    """A validated definition, indexed for the scheduler. The scheduler caches one per version
    and shares it between steps: treat it (and the definition) as read-only."""

    def __init__(self, definition: dict, *, version: int | None = None):
        self.definition = definition
        self.version = version
        self.nodes: dict[str, dict] = {node["id"]: node for node in definition["nodes"]}
        self.order: list[str] = [node["id"] for node in definition["nodes"]]
        self.position: dict[str, int] = {node_id: i for i, node_id in enumerate(self.order)}
        self.edges: list[dict] = definition.get("edges") or []
        self.incoming: dict[str, list[dict]] = {node_id: [] for node_id in self.nodes}
        self.outgoing: dict[str, list[dict]] = {node_id: [] for node_id in self.nodes}
        for edge in self.edges:
            self.incoming[edge["target"]].append(edge)
            self.outgoing[edge["source"]].append(edge)
        self.start = start_node(definition)
        self._refs: dict[object, frozenset[str] | None] = {}

    def node_refs(self, node_id: str) -> frozenset[str] | None:
        """The node ids whose results a step of `node_id` reads (None: all)."""
        key = ("node", node_id)
        if key not in self._refs:
            node = self.nodes[node_id]
            config = node.get("config") or {}
            refs = registry.get(node["type"]).step_refs(config)
            # the scheduler renders the whole config as the step's input, too
            own = expressions.step_refs(config)
            self._refs[key] = None if refs is None or own is None else refs | own
        return self._refs[key]

    def refs(self, key: str, value: Any) -> frozenset[str] | None:
        """`expressions.step_refs(value)`, computed once per `key` (an edge, the outputs)."""
        if key not in self._refs:
            self._refs[key] = expressions.step_refs(value)
        return self._refs[key]
