"""`builtin`: a small table of safe Python functions (calculator, dates, JMESPath, text).

Each function declares its name, description, the JSON Schema of its arguments (which becomes
the tool's default `parameters_schema`) and of its output. A tool picks one with
`config = {"function": "<name>"}`. Nothing here evaluates code, touches files or the network.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
from django.utils.text import slugify
from jmespath.exceptions import JMESPathError
from jsonschema import Draft202012Validator

from . import registry
from .base import Check, ErrorKind, Executor, ToolCall, ToolError, ToolOutput

if TYPE_CHECKING:
    from tools.models import Tool

MAX_TEXT = 100_000
MAX_EXPRESSION = 500


@dataclass(frozen=True)
class BuiltinFunction:
    name: str
    description: str
    parameters: dict  # JSON Schema (type object) of the arguments
    run: Callable[[dict[str, Any]], Any]
    output: dict | None = field(default=None)  # JSON Schema of the result


def _fail(message: str) -> ToolError:
    return ToolError(message, kind=ErrorKind.TOOL_ERROR)


def _object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _text(description: str = "The text.") -> dict:
    return {"type": "string", "maxLength": MAX_TEXT, "description": description}


# --- calculator ------------------------------------------------------------------------------
MAX_EXPONENT = 1000
MAX_INT_BITS = 1024  # about 1.8e308: the float range, so results stay JSON- and float-safe

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_NODE_NAMES = {
    ast.Attribute: "Attribute access",
    ast.Subscript: "Indexing",
    ast.Lambda: "A lambda",
    ast.ListComp: "A comprehension",
    ast.SetComp: "A comprehension",
    ast.DictComp: "A comprehension",
    ast.GeneratorExp: "A generator",
    ast.Compare: "A comparison",
    ast.BoolOp: "and/or",
    ast.IfExp: "if/else",
}


def _round(x, ndigits=None):
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > 308:
        raise _fail("round() takes a whole number of digits between -308 and 308.")
    return round(x, ndigits)


def _min_max(fn):
    def call(*args):
        if not args:
            raise _fail(f"{fn.__name__}() needs at least one number.")
        return fn(args)

    return call


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "min": _min_max(min),
    "max": _min_max(max),
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}


def _checked(value: Any) -> int | float:
    """Every intermediate value: a real, finite number of bounded size."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("The result is not a real number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail("The result is too large (or not a number).")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _fail("The result is too large.")
    return value


def _power(base, exponent):
    if abs(exponent) > MAX_EXPONENT:
        raise _fail(f"Exponents larger than {MAX_EXPONENT} are not allowed.")
    if base != 0 and exponent > 0 and math.log10(abs(base)) * exponent > 308:
        raise _fail("The result is too large.")
    return base**exponent


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _fail(f"{type(node.value).__name__} values are not allowed; only numbers.")
        return _checked(node.value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise _fail(f"The name {node.id!r} is not allowed; only pi and e.")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Pow)):
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise _fail(f"This function call is not allowed; only {', '.join(_FUNCTIONS)}.")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise _fail("Keyword and * arguments are not allowed; pass plain numbers.")
        args = [_eval(arg) for arg in node.args]
        try:
            return _checked(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:  # wrong arity, math domain errors
            raise _fail(f"{node.func.id}(): {exc}") from None
    what = _NODE_NAMES.get(type(node), type(node).__name__)
    raise _fail(f"{what} is not allowed in an expression; only numbers, operators and math functions.")


def calculator(arguments: dict) -> dict:
    expression = arguments["expression"]
    if len(expression) > MAX_EXPRESSION:
        raise _fail(f"The expression is longer than {MAX_EXPRESSION} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise _fail(f"Not a valid expression: {getattr(exc, 'msg', exc)}") from None
    try:
        return {"result": _eval(tree)}
    except ZeroDivisionError:
        raise _fail("Division by zero.") from None
    except OverflowError:
        raise _fail("The result is too large.") from None
    except RecursionError:
        raise _fail("The expression is nested too deeply.") from None


# --- dates -------------------------------------------------------------------------------------
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _fail(f"Unknown time zone {name!r}; use an IANA name such as Europe/Berlin.") from None


def _parse(value: str, argument: str) -> date | datetime:
    """An ISO 8601 date (kept a date) or date-time."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{argument}: {value!r} is not an ISO 8601 date or date-time.") from None


def _as_datetime(value: date | datetime) -> datetime:
    """Dates become midnight; naive date-times count as UTC (so naive and aware mix)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def datetime_now(arguments: dict) -> dict:
    name = arguments.get("timezone") or "UTC"
    now = datetime.now(_zone(name))
    return {"iso": now.isoformat(timespec="seconds"), "unix": int(now.timestamp()), "timezone": name}


UNIT_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def date_diff(arguments: dict) -> dict:
    start = _as_datetime(_parse(arguments["start"], "start"))
    end = _as_datetime(_parse(arguments["end"], "end"))
    unit = arguments.get("unit", "days")
    seconds = (end - start).total_seconds()
    return {"value": _number(seconds / UNIT_SECONDS[unit]), "unit": unit, "seconds": _number(seconds)}


def date_add(arguments: dict) -> dict:
    value = _parse(arguments["date"], "date")
    days, hours, minutes = (arguments.get(k, 0) for k in ("days", "hours", "minutes"))
    try:
        delta = timedelta(days=days, hours=hours, minutes=minutes)
        if not isinstance(value, datetime):
            if delta % timedelta(days=1) == timedelta(0):
                return {"date": (value + delta).isoformat()}  # a date plus whole days stays a date
            value = datetime(value.year, value.month, value.day)
        return {"date": (value + delta).isoformat()}
    except OverflowError:
        raise _fail("The resulting date is out of range (years 1-9999).") from None


# --- JSON ---------------------------------------------------------------------------------------
def json_query(arguments: dict) -> dict:
    try:
        compiled = jmespath.compile(arguments["expression"])
        return {"result": compiled.search(arguments["data"])}
    except JMESPathError as exc:
        raise _fail(f"JMESPath error: {exc}") from None


# --- text ---------------------------------------------------------------------------------------
def text_stats(arguments: dict) -> dict:
    text = arguments["text"]
    return {"chars": len(text), "words": len(text.split()), "lines": len(text.splitlines())}


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "strip": str.strip,
    "slugify": slugify,
    "reverse": lambda text: text[::-1],
}


def text_transform(arguments: dict) -> dict:
    return {"text": TRANSFORMS[arguments["operation"]](arguments["text"])}


def text_truncate(arguments: dict) -> dict:
    text, limit = arguments["text"], arguments["max_chars"]
    suffix = arguments.get("suffix", "…")
    if len(text) <= limit:
        return {"text": text, "truncated": False}
    if len(suffix) >= limit:
        return {"text": text[:limit], "truncated": True}
    return {"text": text[: limit - len(suffix)] + suffix, "truncated": True}


# --- the table ---------------------------------------------------------------------------------
_DATE = {"type": "string", "maxLength": 64, "description": "ISO 8601 date or date-time."}
_OFFSET = {"type": "number", "minimum": -3_650_000, "maximum": 3_650_000}

FUNCTIONS: dict[str, BuiltinFunction] = {
    f.name: f
    for f in [
        BuiltinFunction(
            "calculator",
            "Evaluates an arithmetic expression: numbers, + - * / // % **, parentheses, pi, e and "
            "abs, round, min, max, sqrt, floor, ceil, log, sin, cos, tan.",
            _object(
                {
                    "expression": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_EXPRESSION,
                        "description": "e.g. 2 * (3 + 4) or sqrt(2) / 2",
                    }
                },
                ["expression"],
            ),
            calculator,
            _object({"result": {"type": "number"}}, ["result"]),
        ),
        BuiltinFunction(
            "datetime_now",
            "The current date and time in a time zone (IANA name, default UTC).",
            _object(
                {
                    "timezone": {
                        "type": "string",
                        "maxLength": 64,
                        "default": "UTC",
                        "description": "IANA time zone, e.g. Europe/Berlin.",
                    }
                },
                [],
            ),
            datetime_now,
            _object(
                {"iso": {"type": "string"}, "unix": {"type": "integer"}, "timezone": {"type": "string"}},
                ["iso", "unix", "timezone"],
            ),
        ),
        BuiltinFunction(
            "date_diff",
            "end - start in days, hours, minutes or seconds (naive date-times count as UTC).",
            _object(
                {
                    "start": _DATE,
                    "end": _DATE,
                    "unit": {"enum": list(UNIT_SECONDS), "default": "days"},
                },
                ["start", "end"],
            ),
            date_diff,
            _object(
                {"value": {"type": "number"}, "unit": {"type": "string"}, "seconds": {"type": "number"}},
                ["value", "unit", "seconds"],
            ),
        ),
        BuiltinFunction(
            "date_add",
            "Adds days, hours and minutes (negative to subtract) to a date or date-time.",
            _object(
                {"date": _DATE, "days": _OFFSET, "hours": _OFFSET, "minutes": _OFFSET},
                ["date"],
            ),
            date_add,
            _object({"date": {"type": "string"}}, ["date"]),
        ),
        BuiltinFunction(
            "json_query",
            "Queries JSON data with a JMESPath expression (https://jmespath.org).",
            _object(
                {
                    "data": {"description": "Any JSON value."},
                    "expression": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 1000,
                        "description": "e.g. items[?price > `10`].name",
                    },
                },
                ["data", "expression"],
            ),
            json_query,
            _object({"result": {}}, ["result"]),
        ),
        BuiltinFunction(
            "text_stats",
            "Counts the characters, words and lines of a text.",
            _object({"text": _text()}, ["text"]),
            text_stats,
            _object(
                {"chars": {"type": "integer"}, "words": {"type": "integer"}, "lines": {"type": "integer"}},
                ["chars", "words", "lines"],
            ),
        ),
        BuiltinFunction(
            "text_transform",
            "Transforms a text: upper, lower, title, strip, slugify or reverse.",
            _object({"text": _text(), "operation": {"enum": list(TRANSFORMS)}}, ["text", "operation"]),
            text_transform,
            _object({"text": {"type": "string"}}, ["text"]),
        ),
        BuiltinFunction(
            "text_truncate",
            "Shortens a text to at most max_chars characters, ending with suffix when cut.",
            _object(
                {
                    "text": _text(),
                    "max_chars": {"type": "integer", "minimum": 1, "maximum": MAX_TEXT},
                    "suffix": {"type": "string", "maxLength": 100, "default": "…"},
                },
                ["text", "max_chars"],
            ),
            text_truncate,
            _object({"text": {"type": "string"}, "truncated": {"type": "boolean"}}, ["text", "truncated"]),
        ),
    ]
}

CONFIG_SCHEMA = {
    "type": "object",
    "required": ["function"],
    "additionalProperties": False,
    "properties": {
        "function": {
            "enum": list(FUNCTIONS),
            "description": "The built-in function to run: "
            + "; ".join(f"{f.name} - {f.description}" for f in FUNCTIONS.values()),
        }
    },
}


class BuiltinExecutor(Executor):
    type = "builtin"
    label = "Built-in function"
    description = (
        "Runs one of the platform's safe built-in functions, chosen by config.function: "
        + ", ".join(FUNCTIONS)
        + ". Its arguments schema is filled in from the function."
    )
    config_schema = CONFIG_SCHEMA

    def is_idempotent(self, tool: Tool) -> bool:
        return True

    def default_parameters_schema(self, config: dict) -> dict | None:
        function = FUNCTIONS.get(config.get("function", ""))
        return copy.deepcopy(function.parameters) if function else None

    def default_output_schema(self, config: dict) -> dict | None:
        function = FUNCTIONS.get(config.get("function", ""))
        return copy.deepcopy(function.output) if function and function.output else None

    def execute(self, call: ToolCall) -> ToolOutput:
        name = call.tool.config.get("function", "")
        function = FUNCTIONS.get(name)
        if function is None:
            raise ToolError(f"There is no built-in function {name!r}.", kind=ErrorKind.CONFIG)
        # The tool may declare its own parameters schema: hold the function to its own.
        error = next(iter(Draft202012Validator(function.parameters).iter_errors(call.arguments)), None)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            raise ToolError(
                f"{name}: {where + ': ' if where else ''}{error.message}", kind=ErrorKind.INVALID_ARGUMENTS
            )
        try:
            output = function.run(call.arguments)
        except (ArithmeticError, ValueError) as exc:
            raise _fail(f"{name}: {exc}") from None
        return ToolOutput(output=output, metadata={"function": name})

    def live_checks(self, tool: Tool, *, actor) -> list[Check]:
        name = tool.config.get("function", "")
        if name in FUNCTIONS:
            return [Check("function", True, f"The built-in function {name} exists.")]
        return [Check("function", False, f"There is no built-in function {name!r}.")]


registry.register(BuiltinExecutor())
