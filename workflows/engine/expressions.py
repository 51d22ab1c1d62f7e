"""Workflow expressions and templates, rendered in the sandbox (agentmesh.core.sandbox).

A string that is exactly one `{{ expression }}` keeps the expression's type (a list stays a
list, a number a number); any other string containing `{{`/`{%` renders to text; dicts and
lists are rendered item by item; everything else is a literal. The context holds `inputs`,
`steps.<node_id>.output` (and `.status`, `.error`), and per node type `item`, `index`, `loop`.
"""

import json
import re
from typing import Any

import jmespath
from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from jmespath.exceptions import JMESPathError

from agentmesh.core import sandbox

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_PARSER = SandboxedEnvironment()  # parses only (step_refs); rendering goes through the sandbox


class ExpressionError(ValueError):
    """An expression that does not parse or cannot be evaluated."""


def _single_expression(value: str) -> str | None:
    match = _SINGLE.match(value)
    if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
        return match.group("expr").strip()
    return None


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check(value: Any) -> str | None:
    """The first syntax problem of the templates inside `value` (None when all parse)."""
    if isinstance(value, dict):
        for item in value.values():
            if problem := check(item):
                return problem
    elif isinstance(value, list):
        for item in value:
            if problem := check(item):
                return problem
    elif is_template(value):
        expression = _single_expression(value)
        source = f"{{{{ ({expression}) | tojson }}}}" if expression else value
        try:
            sandbox.validate_template(source)
        except sandbox.TemplateProblem as exc:
            return str(exc)
    return None


def render(value: Any, context: dict) -> Any:
    """`value` with every template rendered against `context`; raises ExpressionError."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not is_template(value):
        return value
    expression = _single_expression(value)
    try:
        if expression is not None:
            text = sandbox.render(f"{{{{ ({expression}) | tojson }}}}", context)
            return json.loads(text)
        return sandbox.render(value, context)
    except sandbox.TemplateProblem as exc:
        raise ExpressionError(str(exc)) from exc
    except ValueError as exc:  # tojson produced something json cannot read back
        raise ExpressionError(f"The expression's value is not JSON: {exc}") from exc


def truthy(value: Any, context: dict) -> bool:
    """Evaluate a condition: a template (its value's truth), or a literal boolean."""
    result = render(value, context)
    if isinstance(result, str):
        return result.strip().lower() not in ("", "false", "0", "none", "null", "no")
    return bool(result)


def check_jmespath(expression: Any) -> str | None:
    if not isinstance(expression, str) or not expression.strip():
        return "A JMESPath expression."
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        return f"Not a valid JMESPath expression: {exc}"
    return None


def search(expression: str, data: Any) -> Any:
    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:
        raise ExpressionError(f"JMESPath failed: {exc}") from exc


def _template_refs(source: str) -> set[str] | None:
    try:
        ast = _PARSER.parse(source)
    except TemplateSyntaxError:
        return None
    names: set[str] = set()
    stack: list[tuple[nodes.Node, nodes.Node | None]] = [(ast, None)]
    while stack:
        node, parent = stack.pop()
        if isinstance(node, nodes.Name) and node.name == "steps":
            if node.ctx != "load":
                return None  # `steps` rebound (set, for, macro argument)
            if isinstance(parent, nodes.Getattr) and parent.node is node and not hasattr(dict, parent.attr):
                names.add(parent.attr)  # (steps.values(), steps.get(...): a dict method reads all)
            elif (
                isinstance(parent, nodes.Getitem)
                and parent.node is node
                and isinstance(parent.arg, nodes.Const)
                and isinstance(parent.arg.value, str)
            ):
                names.add(parent.arg.value)
            else:
                return None  # the whole `steps` mapping is used
        stack.extend((child, node) for child in node.iter_child_nodes())
    return names


def step_refs(value: Any) -> frozenset[str] | None:
    """The node ids the templates in `value` read as `steps.<id>` or `steps['<id>']`; None
    when they may read any step (the `steps` mapping used as a whole, or unparsable)."""
    names: set[str] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif is_template(item):
            found = _template_refs(item)
            if found is None:
                return None
            names |= found
    return frozenset(names)
