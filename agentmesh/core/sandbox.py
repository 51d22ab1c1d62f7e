"""Rendering user-supplied Jinja2 templates safely.

Templates run in Jinja2's `SandboxedEnvironment` (no access to `__class__`, `__globals__`,
unsafe methods …) with `StrictUndefined` (a missing variable is an error, not an empty
string). Template and output sizes are capped, and `*`/`**` are intercepted so that
`{{ 'x' * 10**9 }}` cannot exhaust memory.
"""

from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MAX_TEMPLATE_CHARS = 100_000
MAX_OUTPUT_CHARS = 500_000
MAX_EXPONENT = 100
#: total items all `range()` calls of one render may produce (nested loops multiply otherwise)
MAX_RANGE_ITEMS = 100_000

_range_budget: ContextVar[list[int] | None] = ContextVar("sandbox_range_budget", default=None)


class TemplateProblem(ValueError):
    """Base class: the template cannot be rendered. `variable` names a culprit variable."""

    def __init__(self, message: str, *, variable: str | None = None):
        super().__init__(message)
        self.variable = variable


class TemplateSyntaxInvalid(TemplateProblem):
    pass


class MissingVariable(TemplateProblem):
    pass


class SandboxViolation(TemplateProblem):
    pass


class OutputTooLarge(TemplateProblem):
    pass


class _LimitedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"Exponent larger than {MAX_EXPONENT} is not allowed.")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError("The repeated value would be too large.")
        return super().call_binop(context, operator, left, right)


def _budgeted_range(*args: int) -> Iterator[int]:
    """`range()` whose items count against one budget per render."""
    budget = _range_budget.get()
    numbers = range(*args)
    if budget is None or len(numbers) > budget[0]:
        raise SecurityError(f"Loops may produce at most {MAX_RANGE_ITEMS} items per render.")
    budget[0] -= len(numbers)
    return iter(numbers)


_environment = _LimitedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_environment.globals["range"] = _budgeted_range


def _parse(source: str):
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntaxInvalid(f"The template is longer than {MAX_TEMPLATE_CHARS} characters.")
    try:
        return _environment.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(f"Template syntax error on line {exc.lineno}: {exc.message}") from exc


def validate_template(source: str) -> None:
    """Raise TemplateSyntaxInvalid unless `source` parses."""
    _parse(source)


def undeclared_variables(source: str) -> set[str]:
    """Names the template reads from its context (loop variables and `set` names excluded)."""
    return meta.find_undeclared_variables(_parse(source))


@lru_cache(maxsize=128)
def _compiled(source: str):
    """(template, undeclared variables): prompts are rendered on every run, parsed once."""
    ast = _parse(source)
    return _environment.from_string(ast), frozenset(meta.find_undeclared_variables(ast))


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render `source` with `variables` in the sandbox; raise a TemplateProblem subclass on failure."""
    try:
        template, undeclared = _compiled(source)
    except TemplateSyntaxError as exc:  # found while compiling, after parsing
        raise TemplateSyntaxInvalid(f"Template syntax error on line {exc.lineno}: {exc.message}") from exc
    missing = sorted(undeclared - set(variables))
    if missing:
        raise MissingVariable(f"Missing variable: {missing[0]}.", variable=missing[0])
    budget_token = _range_budget.set([MAX_RANGE_ITEMS])
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise OutputTooLarge(f"The rendered text is longer than {MAX_OUTPUT_CHARS} characters.")
            parts.append(chunk)
    except TemplateProblem:
        raise
    except SecurityError as exc:
        raise SandboxViolation(f"Refused by the template sandbox: {exc}") from exc
    except UndefinedError as exc:
        raise MissingVariable(f"Undefined value in template: {exc.message}") from exc
    except TemplateSyntaxError as exc:
        raise TemplateSyntaxInvalid(f"Template syntax error on line {exc.lineno}: {exc.message}") from exc
    except TemplateError as exc:
        raise TemplateProblem(f"The template cannot be rendered: {exc.message}") from exc
    except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
        raise TemplateProblem(f"The template cannot be rendered: {type(exc).__name__}: {exc}") from exc
    finally:
        _range_budget.reset(budget_token)
    return "".join(parts)
