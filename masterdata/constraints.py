"""Constraint types, their JSON Schemas, and the merge into effective limits.

A constraint is a `type` plus `rules`; the rules of each type are validated with the JSON
Schema below. `effective_limits()` merges several constraints into the limits an agent runs
under, the most restrictive value winning. The agents app imports it from here.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

_POSITIVE_INT = {"type": "integer", "minimum": 1}
_NON_NEGATIVE_NUMBER = {"type": "number", "minimum": 0}
_NAME_LIST = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 255},
    "uniqueItems": True,
    "maxItems": 1000,
}


def _object(properties: dict, *, required: list[str] | None = None) -> dict:
    schema = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
    }
    if required:
        schema["required"] = required
    return schema


@dataclass(frozen=True)
class ConstraintType:
    name: str
    label: str
    description: str
    schema: dict


CONSTRAINT_TYPES: dict[str, ConstraintType] = {
    t.name: t
    for t in (
        ConstraintType(
            "resource_limit",
            "Resource limit",
            "Upper bounds on one run: turns, tool calls, tokens and wall time.",
            _object(
                {
                    "max_turns": _POSITIVE_INT,
                    "max_tool_calls": _POSITIVE_INT,
                    "max_input_tokens": _POSITIVE_INT,
                    "max_output_tokens": _POSITIVE_INT,
                    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                }
            ),
        ),
        ConstraintType(
            "budget",
            "Budget",
            "Maximum spend in US dollars, per run and per day.",
            _object(
                {"max_cost_usd_per_run": _NON_NEGATIVE_NUMBER, "max_cost_usd_per_day": _NON_NEGATIVE_NUMBER}
            ),
        ),
        ConstraintType(
            "rate_limit",
            "Rate limit",
            "Maximum number of model requests per minute.",
            _object({"requests_per_minute": _POSITIVE_INT}, required=["requests_per_minute"]),
        ),
        ConstraintType(
            "tool_policy",
            "Tool policy",
            "Tools an agent may call (allowed) and may never call (denied); denied wins.",
            _object({"allowed_tools": _NAME_LIST, "denied_tools": _NAME_LIST}),
        ),
        ConstraintType(
            "network_policy",
            "Network policy",
            "Hosts outbound calls may reach (allowed) and may never reach (denied); denied wins.",
            _object({"allowed_hosts": _NAME_LIST, "denied_hosts": _NAME_LIST}),
        ),
        ConstraintType(
            "content_policy",
            "Content policy",
            "Terms refused in input and the maximum input length in characters.",
            _object({"blocked_terms": _NAME_LIST, "max_input_chars": _POSITIVE_INT}),
        ),
    )
}

#: numeric limits: the smallest wins
NUMERIC_LIMITS = (
    "max_turns",
    "max_tool_calls",
    "max_input_tokens",
    "max_output_tokens",
    "timeout_seconds",
    "max_cost_usd_per_run",
    "max_cost_usd_per_day",
    "requests_per_minute",
    "max_input_chars",
)
#: allow lists: intersection (None = no restriction)
ALLOW_LISTS = ("allowed_tools", "allowed_hosts")
#: deny lists: union
DENY_LISTS = ("denied_tools", "denied_hosts", "blocked_terms")


class InvalidRules(ValueError):
    """`field` is the dotted path of the offending input, e.g. `rules.max_turns`."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


def schema_error_field(error: SchemaValidationError, root: str) -> str:
    """Dotted path of the input a JSON Schema error is about, e.g. `rules.max_turns`."""
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        path += missing[:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = sorted(k for k in error.instance if k not in known)
        path += extra[:1]
    field = root
    for part in path:
        field += f"[{part}]" if part.isdigit() else f".{part}"
    return field


def first_schema_error(schema: dict, instance: Any, *, root: str) -> InvalidRules | None:
    """The first error of `instance` against `schema` (deterministic order), or None."""
    errors = sorted(
        Draft202012Validator(schema).iter_errors(instance),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)),
    )
    if not errors:
        return None
    return InvalidRules(errors[0].message, field=schema_error_field(errors[0], root))


def validate_rules(constraint_type: str, rules: Any) -> None:
    """Raise InvalidRules unless `rules` is valid for `constraint_type`."""
    if constraint_type not in CONSTRAINT_TYPES:
        choices = ", ".join(CONSTRAINT_TYPES)
        raise InvalidRules(
            f"Unknown constraint type {constraint_type!r}; choose one of: {choices}.", field="type"
        )
    error = first_schema_error(CONSTRAINT_TYPES[constraint_type].schema, rules, root="rules")
    if error:
        raise error


def empty_limits() -> dict[str, Any]:
    return {
        **dict.fromkeys(NUMERIC_LIMITS),
        **dict.fromkeys(ALLOW_LISTS),
        **{name: [] for name in DENY_LISTS},
    }


def _type_and_rules(constraint: Any) -> tuple[str, Mapping[str, Any]] | None:
    if isinstance(constraint, Mapping):
        if not constraint.get("is_active", True):
            return None
        return constraint["type"], constraint.get("rules") or {}
    if not getattr(constraint, "is_active", True):
        return None
    return constraint.type, constraint.rules or {}


def effective_limits(constraints: Iterable[Any]) -> dict[str, Any]:
    """Merge constraints (model instances or {"type", "rules"} dicts) into one set of limits.

    Most restrictive wins: the minimum of each numeric limit, the intersection of allow
    lists, the union of deny lists. A limit no constraint sets is None (unlimited); deny
    lists default to []. Inactive constraints are skipped. Lists come back sorted.
    """
    limits = empty_limits()
    for constraint in constraints:
        parsed = _type_and_rules(constraint)
        if parsed is None:
            continue
        _type, rules = parsed
        for name, value in rules.items():
            if name in NUMERIC_LIMITS:
                current = limits[name]
                limits[name] = value if current is None else min(current, value)
            elif name in ALLOW_LISTS:
                current = limits[name]
                limits[name] = set(value) if current is None else current & set(value)
            elif name in DENY_LISTS:
                limits[name] = set(limits[name]) | set(value)
    for name in (*ALLOW_LISTS, *DENY_LISTS):
        if limits[name] is not None:
            limits[name] = sorted(limits[name])
    # A denied entry is never allowed, even when an allow list names it.
    for allowed, denied in (("allowed_tools", "denied_tools"), ("allowed_hosts", "denied_hosts")):
        if limits[allowed] is not None:
            limits[allowed] = [item for item in limits[allowed] if item not in set(limits[denied])]
    return limits
