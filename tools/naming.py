"""Tool names from outside sources (OpenAPI operationIds, MCP tool names)."""

import re

from .models import Tool

NAME_MAX = 64
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


def sanitize_name(raw: str) -> str:
    """`raw` as a tool name (^[a-zA-Z0-9_-]{1,64}$): other characters collapse to `_`; may be empty."""
    return _NOT_NAME.sub("_", raw).strip("_")[:NAME_MAX]


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`… (still at most 64 characters) if taken; marks it taken."""
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = f"{name[: NAME_MAX - len(suffix)]}{suffix}", n + 1
    taken.add(candidate)
    return candidate


def owner_tool_names(owner) -> set[str]:
    return set(Tool.objects.filter(owner=owner).values_list("name", flat=True))
