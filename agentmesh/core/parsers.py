"""The API's one request parser: JSON, with a cap on nesting depth.

Python's JSON decoder recurses once per level, so a body nested thousands of levels deep
would end in a RecursionError (a 500). The depth is measured on the raw text first, with a
loop over its brackets outside string literals, and a body deeper than MAX_JSON_DEPTH is a 400.
A string holding a NUL character (`\\u0000`) is a 400 as well: no database column stores it.
"""

import codecs
import math
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

DEFAULT_MAX_JSON_DEPTH = 64

# A JSON string literal (unrolled loop: no backtracking blow-up on long strings).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, limit: int | None = None) -> int:
    """How deeply arrays/objects nest in a JSON text (0 for a scalar). Stops counting once
    `limit` is passed and returns limit + 1."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if limit is not None and deepest > limit:
                    return deepest
        else:
            depth -= 1
    return deepest


def max_json_depth() -> int:
    return getattr(settings, "MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser (strict: no NaN/Infinity) that refuses bodies nested too deeply."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            limit = max_json_depth()
            if json_depth(text, limit) > limit:
                raise ParseError(f"JSON parse error - nested deeper than {limit} levels.")
            data = json.loads(
                text,
                parse_constant=json.strict_constant if self.strict else None,
                parse_float=_finite_float if self.strict else None,
            )
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from exc
        if "\\u0000" in text and _has_nul(data):
            # No database text or JSON column can store it (PostgreSQL refuses it: a 500).
            raise ParseError("JSON parse error - strings may not contain the NUL character (\\u0000).")
        return data


def _finite_float(text: str) -> float:
    """A JSON number such as 1e400 is no NaN/Infinity literal, but is infinite once read."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Out of range float value: {text[:40]}")
    return value


def _has_nul(data) -> bool:
    """Whether any string (key or value) in the decoded JSON holds a NUL; iterative."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False
