"""JSONPath lookups for response mapping and test expectations (jsonpath-ng, parsed once)."""

from functools import lru_cache
from typing import Any

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse

NOTHING = object()


class JSONPathInvalid(ValueError):
    pass


@lru_cache(maxsize=512)
def compile_path(expression: str):
    try:
        return parse(expression)
    except (
        JsonPathLexerError,
        JsonPathParserError,
        Exception,
    ) as exc:  # the parser raises bare Exceptions too
        raise JSONPathInvalid(f"Invalid JSONPath {expression!r}: {exc}") from None


def find(expression: str, document: Any) -> Any:
    """The single match's value, a list when several match, NOTHING when none does."""
    matches = [m.value for m in compile_path(expression).find(document)]
    if not matches:
        return NOTHING
    return matches[0] if len(matches) == 1 else matches
