"""`POST /tools/{id}/test`: run cases (given or stored) and check their expectations."""

from typing import Any

from jsonschema import Draft202012Validator

from .jsonpath import NOTHING, JSONPathInvalid, find
from .models import CallerType, ExecutionStatus, Tool

TEST_CASE_SCHEMA = {
    "type": "object",
    "required": ["arguments"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 100},
        "arguments": {"type": "object"},
        "expect": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "status": {"enum": [s.value for s in ExecutionStatus if s not in ("queued", "running")]},
                "output_schema": {
                    "type": "boolean",
                    "description": "The output satisfies the tool's output schema.",
                },
                "equals": {
                    "type": "object",
                    "description": "{JSONPath: value} the output must match exactly.",
                },
                "contains": {
                    "type": "object",
                    "description": "{JSONPath: value}: a substring of a string, an item of a list, or keys of an object.",
                },
                "max_duration_ms": {"type": "number", "minimum": 0},
            },
        },
    },
}


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return expected in actual
    if isinstance(actual, dict):
        if isinstance(expected, dict):
            return all(k in actual and actual[k] == v for k, v in expected.items())
        return expected in actual
    return False


def check_expectations(tool: Tool, execution, expect: dict) -> list[str]:
    """Failed expectations of one case, as readable sentences (empty when it passed)."""
    failures = []
    wanted = expect.get("status", ExecutionStatus.SUCCEEDED)
    if execution.status != wanted:
        detail = f": {execution.error}" if execution.error else ""
        failures.append(f"status is {execution.status}, expected {wanted}{detail}")
    if expect.get("output_schema") and tool.output_schema:
        error = next(iter(Draft202012Validator(tool.output_schema).iter_errors(execution.result)), None)
        if error is not None:
            failures.append(f"output does not match the output schema: {error.message}")
    for kind in ("equals", "contains"):
        for path, value in (expect.get(kind) or {}).items():
            try:
                actual = find(path, execution.result)
            except JSONPathInvalid as exc:
                failures.append(str(exc))
                continue
            if actual is NOTHING:
                failures.append(f"{path} matches nothing in the output")
            elif kind == "equals" and actual != value:
                failures.append(f"{path} is {actual!r}, expected {value!r}")
            elif kind == "contains" and not _contains(actual, value):
                failures.append(f"{path} ({actual!r}) does not contain {value!r}")
    limit = expect.get("max_duration_ms")
    if limit is not None and (execution.duration_ms or 0) > limit:
        failures.append(f"took {execution.duration_ms:.0f} ms, more than {limit} ms")
    return failures


def tool_test(*, tool: Tool, actor, cases: list[dict] | None = None) -> dict:
    """Run each case as a test execution (not counted in stats) and report per case."""
    from .services import ToolArgumentsInvalid, tool_execute

    cases = tool.test_cases if cases is None else cases
    results = []
    for index, case in enumerate(cases):
        name = case.get("name") or f"case {index + 1}"
        expect = case.get("expect") or {}
        try:
            execution = tool_execute(
                tool=tool,
                arguments=case.get("arguments", {}),
                actor=actor,
                caller_type=CallerType.TEST,
                is_test=True,
            )
        except ToolArgumentsInvalid as exc:
            message = "; ".join(f"{e}" for errors in exc.detail.values() for e in errors)
            results.append(
                {"name": name, "passed": False, "status": None, "execution_id": None, "duration_ms": None,
                 "output": None, "error": "", "failures": [f"invalid arguments: {message}"]}
            )  # fmt: skip
            continue
        failures = check_expectations(tool, execution, expect)
        results.append(
            {
                "name": name,
                "passed": not failures,
                "status": execution.status,
                "execution_id": str(execution.pk),
                "duration_ms": execution.duration_ms,
                "output": execution.result,
                "error": execution.error,
                "failures": failures,
            }
        )
    return {
        "passed": bool(results) and all(r["passed"] for r in results),
        "total": len(results),
        "failed": sum(not r["passed"] for r in results),
        "cases": results,
    }
