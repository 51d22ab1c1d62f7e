"""Rendering user-supplied Jinja2 templates safely.

Templates run in Jinja2's `SandboxedEnvironment` (no access to `__class__`, `__globals__`,
unsafe methods …) with `StrictUndefined` (a missing variable is an error, not an empty
string). Template and output sizes are capped, and every render is bounded twice more:

* **Time** (`SANDBOX_RENDER_TIMEOUT_SECONDS`, 1 s by default). A thread cannot stop CPU-bound
  Python code, so the render checks a monotonic deadline itself, cooperatively: every loop
  iteration and every call (macros included) counts, and the clock is read every 64 of them
  and every 16 KB of output. Without a loop or a call a template's work is bounded by its
  length and the size limits, so a render never holds a request or worker thread much longer.
* **Size of every intermediate value** (`MAX_VALUE_SIZE` characters or items, the output
  cap). Operators (`*`, `+`, `%`, `~`), calls of str/list methods, filters and globals are
  checked before they compute where the result size can be foreseen (`'x' * n`,
  `'%0*d' % (n, 1)`, `ljust`/`center`/`zfill` widths, `'{:>n}'.format`, `replace`, `join`,
  `indent`, `wordwrap`, `batch`, `slice`, `lipsum` …) and after every call otherwise; a value
  is measured as its text would be before it is turned into text (output, `~`, `tojson` …),
  so nested references cannot multiply into a huge string.

Exceeding either raises `RenderTimeout` or `ValueTooLarge` (both `SandboxViolation`, a
`TemplateProblem`) naming the limit; callers turn it into a 400 or a failed step.
"""

import inspect
import operator
import re
import string
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache, wraps
from typing import Any

from django.conf import settings
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, generate_lorem_ipsum
from markupsafe import Markup

MAX_TEMPLATE_CHARS = 100_000
MAX_OUTPUT_CHARS = 500_000
#: characters of a text, items of a list/dict, or characters a value would render to
MAX_VALUE_SIZE = MAX_OUTPUT_CHARS
MAX_INT_BITS = 100_000
MAX_EXPONENT = 100
#: total items all `range()` calls of one render may produce (nested loops multiply otherwise)
MAX_RANGE_ITEMS = 100_000
DEFAULT_RENDER_TIMEOUT_SECONDS = 1.0
#: the clock is read once per this many loop items / attribute reads / calls (a power of 2)
_CHECK_EVERY = 64
_OUTPUT_CHECK_EVERY = 16_384  # characters of output between two reads of the clock


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


class RenderTimeout(SandboxViolation):
    """The render ran past its time limit."""


class ValueTooLarge(SandboxViolation):
    """A value the template computes would exceed the size limit."""


class _Render:
    """The budgets of one render (a context variable: renders run in many threads)."""

    __slots__ = ("deadline", "ops", "range_left", "timeout")

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.ops = 0
        self.range_left = MAX_RANGE_ITEMS

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderTimeout(
                f"Refused by the template sandbox: the render exceeded its time limit of "
                f"{self.timeout:g} s (SANDBOX_RENDER_TIMEOUT_SECONDS)."
            )

    def tick(self) -> None:
        self.ops += 1
        if not self.ops & (_CHECK_EVERY - 1):
            self.check_time()


_render: ContextVar[_Render | None] = ContextVar("sandbox_render", default=None)


def _too_large(what: str = "a value", limit: str = f"{MAX_VALUE_SIZE} characters or items") -> ValueTooLarge:
    return ValueTooLarge(f"Refused by the template sandbox: {what} would exceed the size limit ({limit}).")


def _check_length(size: int, what: str = "a value") -> None:
    if size > MAX_VALUE_SIZE:
        raise _too_large(what)


_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_SMALL = frozenset({float, bool, type(None)})
_STRUCTURES = (list, tuple, dict, set, frozenset, Namespace)


def _bounded(value: Any) -> Any:
    """`value`, unless it is larger than the limits."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_VALUE_SIZE:
            raise _too_large()
    elif kind is int:
        if value.bit_length() > MAX_INT_BITS:
            raise _too_large("a number", f"{MAX_INT_BITS} bits")
    elif kind not in _SMALL and isinstance(value, _SIZED) and len(value) > MAX_VALUE_SIZE:
        raise _too_large()
    return value


def _text_size(value: Any, indent: int = 0) -> int:
    """About how many characters `str(value)` (or its JSON, indented by `indent`) has, counting
    no further than the limit: shared references count every time, as the text repeats them.
    Raises ValueTooLarge."""
    if isinstance(value, str):
        _check_length(len(value))
        return len(value)
    total = 0
    stack = [(value, 0)]
    state = _render.get()
    while stack:
        item, depth = stack.pop()
        total += indent * depth
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 + 2 * len(item)
            stack.extend((key, depth + 1) for key in item)
            stack.extend((each, depth + 1) for each in item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend((each, depth + 1) for each in item)
        elif isinstance(item, Namespace):
            total += 12
            stack.append((object.__getattribute__(item, "_Namespace__attrs"), depth))
        else:
            total += 8  # numbers, None, booleans, small objects
        if total > MAX_VALUE_SIZE:
            raise _too_large("the text of a value")
        if state is not None:
            state.tick()
    return total


def _check_text(value: Any) -> None:
    if not isinstance(value, str) and isinstance(value, _STRUCTURES):
        _text_size(value)


# --- foreseeable sizes ------------------------------------------------------------------------
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<type>.)?",
    re.DOTALL,
)


def _check_printf(template: str, values: Any) -> None:
    """Widths and precisions of `template % values`, `*` ones included, before formatting."""
    positional = values if isinstance(values, tuple) else (values,)
    index = 0
    for match in _PRINTF.finditer(template):
        if match["type"] == "%":
            continue
        for part in (match["width"], match["precision"]):
            if part == "*":
                number = positional[index] if index < len(positional) else 0
                index += 1
            elif part:
                number = int(part)
            else:
                continue
            if isinstance(number, int) and abs(number) > MAX_VALUE_SIZE:
                raise _too_large("a formatted field")
        if match["key"] is None:
            index += 1
    for value in values.values() if isinstance(values, Mapping) else positional:
        _check_text(value)


_NUMBER = re.compile(r"\d+")


def _check_format(template: str, args: tuple, kwargs: Mapping) -> None:
    """Widths and precisions of `template.format(...)` before formatting."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # format() reports it
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:  # nested width/precision or spec: any number given may be one
            numbers = [v for v in (*args, *kwargs.values()) if isinstance(v, int)]
            numbers += [
                int(n)
                for v in (*args, *kwargs.values())
                if isinstance(v, str) and len(v) <= 100
                for n in _NUMBER.findall(v)
            ]
        else:
            numbers = [int(n) for n in _NUMBER.findall(spec)]
        if any(abs(n) > MAX_VALUE_SIZE for n in numbers):
            raise _too_large("a formatted field")
    for value in (*args, *kwargs.values()):
        _check_text(value)


def _len_or_zero(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def _join_size(separator: str, items: Any) -> int | None:
    if not isinstance(items, list | tuple):
        return None
    return sum(_text_size(i) for i in items) + len(separator) * max(0, len(items) - 1)


def _replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(text)
    try:
        hits = text.count(old) if old else len(text) + 1
    except TypeError:
        return len(text)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _width(args: tuple, kwargs: Mapping, name: str, default: int = 0) -> Any:
    return args[0] if args else kwargs.get(name, default)


def _precheck_text_method(text: str | bytes, name: str, args: tuple, kwargs: Mapping) -> None:
    """str and bytes methods whose result size follows from their arguments."""
    if name in ("ljust", "rjust", "center", "zfill"):
        width = _width(args, kwargs, "width")
        if isinstance(width, int):
            _check_length(width, f"the text of {name}()")
    elif name == "expandtabs":
        size = _width(args, kwargs, "tabsize", 8)
        if isinstance(size, int):
            tabs = text.count(b"\t" if isinstance(text, bytes) else "\t")
            _check_length(len(text) + tabs * size, "the text of expandtabs()")
    elif name == "replace" and args:
        _check_length(_replace_size(text, *args[:3]), "the text of replace()")
    elif name == "join" and args:
        size = _join_size(text, args[0])
        if size is not None:
            _check_length(size, "the text of join()")
    elif name == "translate" and args and isinstance(args[0], Mapping) and isinstance(text, str):
        longest = max((_len_or_zero(v) for v in args[0].values()), default=1)
        _check_length(len(text) * max(1, longest), "the text of translate()")


def _precheck_mutation(receiver: Any, name: str, args: tuple) -> None:
    if name in ("extend", "update") and args and isinstance(receiver, list | dict | set):
        _check_length(len(receiver) + _len_or_zero(args[0]))


# Filters whose result size follows from their arguments: checked before they run.
def _filter_prechecks() -> dict:
    def center(value, width=80):
        if isinstance(width, int):
            _check_length(max(_len_or_zero(value), width), "the text of center")

    def indent(value, width=4, *args, **kwargs):
        lines = str(value).count("\n") + 1 if isinstance(value, str) else 1
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        _check_length(_len_or_zero(value) + lines * per_line, "the text of indent")

    def wordwrap(value, width=79, break_long_words=True, wrapstring=None, *args, **kwargs):
        if isinstance(value, str) and isinstance(width, int) and width > 0:
            breaks = len(value) // width + 1
            _check_length(len(value) + breaks * len(wrapstring or "\n"), "the text of wordwrap")

    def format_(value, *args, **kwargs):
        if isinstance(value, str):
            _check_printf(value, kwargs or args)

    def replace(value, old, new, count=None):
        if isinstance(value, str):
            _check_length(
                _replace_size(value, old, new, -1 if count is None else count), "the text of replace"
            )

    def join(value, d="", attribute=None):
        if attribute is None and isinstance(d, str):
            size = _join_size(d, value)
            if size is not None:
                _check_length(size, "the text of join")

    def sum_(iterable, attribute=None, start=0):
        if isinstance(start, _SIZED) and isinstance(iterable, list | tuple):
            _check_length(len(start) + sum(_len_or_zero(item) for item in iterable), "the sum")

    def tojson(value, indent=None):
        _text_size(
            value, indent if isinstance(indent, int) else len(indent) if isinstance(indent, str) else 0
        )

    def batch(value, linecount, fill_with=None):
        if fill_with is not None and isinstance(linecount, int):
            _check_length(linecount, "a batch")

    def slice_(value, slices, fill_with=None):
        if isinstance(slices, int):
            _check_length(slices, "the slices")

    def stringify(value, *args, **kwargs):
        _check_text(value)

    checks = {
        "center": center,
        "indent": indent,
        "wordwrap": wordwrap,
        "format": format_,
        "replace": replace,
        "join": join,
        "batch": batch,
        "slice": slice_,
        "sum": sum_,
        "tojson": tojson,
    }
    for name in ("string", "pprint", "urlencode", "xmlattr", "escape", "e", "forceescape", "safe"):
        checks[name] = stringify
    for name in ("wordcount", "title", "upper", "lower", "capitalize", "trim", "striptags", "urlize"):
        checks[name] = stringify
    return checks


_PRECHECKS = _filter_prechecks()


def _limited_filter(name: str, function):
    precheck = _PRECHECKS.get(name)
    skip = 1 if _PassArg.from_obj(function) is not None else 0  # the context jinja passes first

    if precheck is None:

        @wraps(function)  # keeps jinja's pass_context/pass_eval_context marker
        def bounded(*args, **kwargs):
            return _bounded(function(*args, **kwargs))

        return bounded

    @wraps(function)
    def limited(*args, **kwargs):
        try:  # (not contextlib.suppress: this is on the hot path)  # noqa: SIM105
            precheck(*args[skip:] if skip else args, **kwargs)
        except TypeError:
            pass  # wrong arguments: the filter itself says so
        return _bounded(function(*args, **kwargs))

    return limited


def _precheck_lipsum(args: tuple, kwargs: Mapping) -> None:
    try:
        bound = inspect.signature(generate_lorem_ipsum).bind(*args, **kwargs)
    except TypeError:
        return
    bound.apply_defaults()
    n, most = bound.arguments["n"], bound.arguments["max"]
    if isinstance(n, int) and isinstance(most, int):
        _check_length(n * most * 12, "the text of lipsum()")


# --- the environment ----------------------------------------------------------------------------
_SEQUENCES = (str, list, tuple, bytes)


def _check_power(left: Any, right: Any) -> None:
    if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
        raise SecurityError(f"Exponent larger than {MAX_EXPONENT} is not allowed.")
    if type(left) is int and isinstance(right, int) and left.bit_length() * right > MAX_INT_BITS:
        raise _too_large("a number", f"{MAX_INT_BITS} bits")


def _check_product(left: Any, right: Any) -> None:
    if type(left) is int and type(right) is int:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _too_large("a number", f"{MAX_INT_BITS} bits")
        return
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, _SEQUENCES) and isinstance(count, int):
            if len(sequence) * count > MAX_VALUE_SIZE:
                raise _too_large("the repeated value")
            if sequence and not isinstance(sequence, str) and count > 1:  # references to big items
                _check_length(_text_size(sequence) * count, "the text of the repeated value")


def _check_sum(left: Any, right: Any) -> None:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        _check_length(len(left) + len(right), "the sum")


def _check_modulo(left: Any, right: Any) -> None:
    if isinstance(left, str):
        _check_printf(left, right)


_BINOP_CHECKS = {"**": _check_power, "*": _check_product, "+": _check_sum, "%": _check_modulo}
_BINOPS = {"**": operator.pow, "*": operator.mul, "+": operator.add, "%": operator.mod}


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator with two additions: the iterable of every `{% for %}` counts its
    items against the clock, and `~` measures its operands before turning them into text."""

    def visit_For(self, node, frame):
        if not getattr(node.iter, "sandbox_guard", False):
            # Jinja refuses new node types: an existing one, marked, wraps the iterable.
            guard = nodes.MarkSafe(node.iter, lineno=node.iter.lineno)
            guard.sandbox_guard = True
            node.iter = guard
        super().visit_For(node, frame)

    def visit_MarkSafe(self, node, frame):
        if not getattr(node, "sandbox_guard", False):
            return super().visit_MarkSafe(node, frame)
        self.write("environment.guarded_iter(")
        self.visit(node.expr, frame)
        self.write(")")
        return None

    def visit_Concat(self, node, frame):
        """Jinja's, with the operands measured before they are turned into text."""
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.measured((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


def _guarded(iterable, state: _Render) -> Iterator:
    for item in iterable:
        state.ops += 1
        if not state.ops & (_CHECK_EVERY - 1):
            state.check_time()
        yield item


class _LimitedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(_BINOPS)
    code_generator_class = _LimitedCodeGenerator

    def __init__(self, **options):
        super().__init__(**options)
        self.filters = {name: _limited_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def guarded_iter(iterable):
        state = _render.get()
        return iterable if state is None else _guarded(iterable, state)

    @staticmethod
    def measured(values: tuple) -> tuple:
        total = 0
        for value in values:
            total += len(value) if isinstance(value, str) else _text_size(value)
        _check_length(total, "a joined text (~)")
        return values

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _BINOP_CHECKS[operator](left, right)
        return _bounded(_BINOPS[operator](left, right))

    def wrap_str_format(self, value: Any):
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        @wraps(wrapper)
        def checked(*args, **kwargs):
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                _check_format(template, (), args[0])
            else:
                _check_format(template, args, kwargs)
            return wrapper(*args, **kwargs)

        return checked

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (jinja's signature)
        state = _render.get()
        if state is not None:
            state.tick()
        receiver = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(receiver, str | bytes | bytearray):
            _precheck_text_method(receiver, name, args, kwargs)
        elif receiver is not None:
            _precheck_mutation(receiver, name, args)
        elif __obj is generate_lorem_ipsum:
            _precheck_lipsum(args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(receiver, list | dict | set):
            _bounded(receiver)  # append/insert/update… grow the receiver
            if isinstance(receiver, dict):
                return result  # get/pop/setdefault hand back values that exist already
        return _bounded(result)


def _finalize(value: Any) -> Any:
    """Every `{{ … }}` value on its way to text: a container is measured first."""
    if type(value) not in _TEXT_LIKE and isinstance(value, _STRUCTURES):
        _text_size(value)
    return value


_TEXT_LIKE = frozenset({str, int, float, bool, type(None), Markup})


def _budgeted_range(*args: int) -> Iterator[int]:
    """`range()` whose items count against one budget per render."""
    state = _render.get()
    numbers = range(*args)
    if state is None or len(numbers) > state.range_left:
        raise SecurityError(f"Loops may produce at most {MAX_RANGE_ITEMS} items per render.")
    state.range_left -= len(numbers)
    return iter(numbers)


_environment = _LimitedSandbox(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize
)
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
    undeclared = frozenset(meta.find_undeclared_variables(ast))
    return _environment.from_string(ast), undeclared


def render_timeout() -> float:
    return float(getattr(settings, "SANDBOX_RENDER_TIMEOUT_SECONDS", DEFAULT_RENDER_TIMEOUT_SECONDS))


def render(source: str, variables: Mapping[str, Any]) -> str:
    """Render `source` with `variables` in the sandbox; raise a TemplateProblem subclass on failure."""
    try:
        template, undeclared = _compiled(source)
    except TemplateSyntaxError as exc:  # found while compiling, after parsing
        raise TemplateSyntaxInvalid(f"Template syntax error on line {exc.lineno}: {exc.message}") from exc
    missing = sorted(undeclared - set(variables))
    if missing:
        raise MissingVariable(f"Missing variable: {missing[0]}.", variable=missing[0])
    state = _Render(render_timeout())
    token = _render.set(state)
    try:
        parts: list[str] = []
        size, check_at = 0, _OUTPUT_CHECK_EVERY
        for chunk in template.generate(**variables):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise OutputTooLarge(f"The rendered text is longer than {MAX_OUTPUT_CHARS} characters.")
            parts.append(chunk)
            if size >= check_at:  # (loops and calls read the clock themselves)
                state.check_time()
                check_at = size + _OUTPUT_CHECK_EVERY
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
    except (TypeError, ValueError, ArithmeticError, RecursionError, MemoryError) as exc:
        raise TemplateProblem(f"The template cannot be rendered: {type(exc).__name__}: {exc}") from exc
    finally:
        _render.reset(token)
    return "".join(parts)
