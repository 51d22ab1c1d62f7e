"""The `builtin` tool type: a table of safe functions run through the tool services and API."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator

from agentmesh.core.exceptions import ServiceValidationError
from tools import services
from tools.executors import ErrorKind, registry
from tools.executors.builtin import FUNCTIONS
from tools.models import ExecutionStatus


def make_tool(owner, function, name=None, **fields):
    return services.tool_create(
        owner=owner, name=name or function, type="builtin", config={"function": function}, **fields
    )


def run(tool, owner, **arguments):
    return services.tool_execute(tool=tool, arguments=arguments, actor=owner)


def ok(tool, owner, **arguments):
    execution = run(tool, owner, **arguments)
    assert execution.status == ExecutionStatus.SUCCEEDED, execution.error
    output_schema = FUNCTIONS[tool.config["function"]].output
    assert not list(Draft202012Validator(output_schema).iter_errors(execution.result))
    return execution.result


def failed(tool, owner, **arguments):
    execution = run(tool, owner, **arguments)
    assert execution.status == ExecutionStatus.FAILED
    return execution


# --- the type and its config ----------------------------------------------------------------
def test_type_is_registered_with_every_function_in_its_config_schema():
    executor = registry.get("builtin")
    function = executor.config_schema["properties"]["function"]
    assert set(function["enum"]) >= {
        "calculator",
        "datetime_now",
        "date_diff",
        "date_add",
        "json_query",
        "text_stats",
        "text_transform",
        "text_truncate",
    }
    assert "calculator" in function["description"]
    for f in FUNCTIONS.values():
        Draft202012Validator.check_schema(f.parameters)
        Draft202012Validator.check_schema(f.output)


def test_parameters_schema_is_filled_from_the_function(developer):
    tool = make_tool(developer, "calculator", name="calc")
    assert tool.parameters_schema["required"] == ["expression"]
    assert tool.parameters_schema["properties"]["expression"]["type"] == "string"
    assert registry.get("builtin").is_idempotent(tool)


def test_unknown_function_names_config_function(developer):
    with pytest.raises(ServiceValidationError) as exc:
        make_tool(developer, "rm_rf")
    assert "config.function" in exc.value.detail


def test_extra_config_keys_are_refused(developer):
    with pytest.raises(ServiceValidationError) as exc:
        services.tool_create(
            owner=developer, name="x", type="builtin", config={"function": "calculator", "x": 1}
        )
    assert "config" in exc.value.detail


def test_missing_argument_is_named_before_running(developer):
    tool = make_tool(developer, "calculator")
    with pytest.raises(services.ToolArgumentsInvalid) as exc:
        services.tool_execute(tool=tool, arguments={}, actor=developer)
    assert "arguments.expression" in exc.value.detail
    assert not tool.executions.exists()


def test_validate_reports_the_function_and_allows_deploy(developer):
    tool = make_tool(developer, "text_stats")
    checks = services.tool_validate(tool=tool, actor=developer)
    assert all(c.ok for c in checks)
    assert any(c.name == "function" and c.ok for c in checks)
    assert services.tool_deploy(tool=tool, actor=developer).status == "deployed"


def test_a_custom_parameters_schema_does_not_bypass_the_functions_own(developer):
    tool = make_tool(developer, "calculator", parameters_schema={"type": "object", "properties": {}})
    execution = failed(tool, developer)
    assert execution.error_kind == ErrorKind.INVALID_ARGUMENTS
    assert "expression" in execution.error


# --- calculator -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("-2 ** 2", -4),
        ("2 ** 3 ** 2", 512),
        ("7 // 2 + 7 % 3", 4),
        ("1 / 4", 0.25),
        ("2 ** -1", 0.5),
        ("+5 - -5", 10),
        ("sqrt(16) + abs(-3)", 7.0),
        ("round(pi, 2)", 3.14),
        ("round(2.6)", 3),
        ("min(3, 1, 2) + max(4, 9)", 10),
        ("floor(2.7) + ceil(2.1)", 5),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("sin(0) + cos(0) + tan(0)", 1.0),
        ("1.5e3", 1500.0),
    ],
)
def test_calculator(developer, expression, expected):
    tool = make_tool(developer, "calculator")
    result = ok(tool, developer, expression=expression)["result"]
    assert result == pytest.approx(expected)
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "().__class__",
        "a.b",
        "'x' * 10",
        "x + 1",
        "lambda: 1",
        "[x for x in (1, 2)]",
        "(1).real",
        "abs(x=1)",
        "open('/etc/passwd')",
        "True + 1",
        "1 < 2",
    ],
)
def test_calculator_refuses_anything_but_arithmetic(developer, expression):
    tool = make_tool(developer, "calculator")
    execution = failed(tool, developer, expression=expression)
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert "not allowed" in execution.error


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "Exponents larger than 1000"),
        ("10 ** 309", "too large"),
        ("(10**300) * (10**300)", "too large"),
        ("1e308 * 10", "too large"),
        ("round(5, -10**100)", "round()"),
        ("(-8) ** 0.5", "not a real number"),
        ("sqrt(-1)", "math domain error"),
        ("2 +", "Not a valid expression"),
    ],
)
def test_calculator_refuses_huge_or_invalid_results(developer, expression, message):
    tool = make_tool(developer, "calculator")
    execution = failed(tool, developer, expression=expression)
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert message in execution.error


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "5 % 0", "0 ** -1"])
def test_division_by_zero_is_a_recorded_failure(developer, expression):
    tool = make_tool(developer, "calculator")
    execution = failed(tool, developer, expression=expression)
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert execution.error == "Division by zero."
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED


def test_calculator_expression_length_is_capped_by_the_schema(developer):
    tool = make_tool(developer, "calculator")
    with pytest.raises(services.ToolArgumentsInvalid) as exc:
        run(tool, developer, expression="1+" * 250 + "1")
    assert "arguments.expression" in exc.value.detail


# --- dates ---------------------------------------------------------------------------------------
def test_datetime_now_in_a_zone(developer):
    tool = make_tool(developer, "datetime_now")
    before = datetime.now(UTC)
    result = ok(tool, developer, timezone="Asia/Tokyo")
    now = datetime.fromisoformat(result["iso"])
    assert result["timezone"] == "Asia/Tokyo"
    assert now.utcoffset() == timedelta(hours=9)
    assert abs(now - before) < timedelta(seconds=5)
    assert abs(result["unix"] - before.timestamp()) < 5


def test_datetime_now_defaults_to_utc(developer):
    tool = make_tool(developer, "datetime_now")
    result = ok(tool, developer)
    assert result["timezone"] == "UTC"
    assert datetime.fromisoformat(result["iso"]).utcoffset() == timedelta(0)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime"])
def test_datetime_now_unknown_zone_fails(developer, zone):
    tool = make_tool(developer, "datetime_now")
    execution = failed(tool, developer, timezone=zone)
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert "Unknown time zone" in execution.error


def test_date_diff(developer):
    tool = make_tool(developer, "date_diff")
    assert ok(tool, developer, start="2024-01-01", end="2024-03-01") == {
        "value": 60,  # 2024 is a leap year
        "unit": "days",
        "seconds": 60 * 86400,
    }
    assert (
        ok(tool, developer, start="2024-01-01T10:00:00+02:00", end="2024-01-01T09:30:00Z", unit="minutes")[
            "value"
        ]
        == 90
    )
    assert ok(tool, developer, start="2024-01-02", end="2024-01-01T12:00", unit="hours")["value"] == -12


def test_date_diff_rejects_non_dates(developer):
    tool = make_tool(developer, "date_diff")
    execution = failed(tool, developer, start="yesterday", end="2024-01-01")
    assert "start" in execution.error
    assert "ISO 8601" in execution.error


def test_date_add(developer):
    tool = make_tool(developer, "date_add")
    assert ok(tool, developer, date="2024-02-28", days=2) == {"date": "2024-03-01"}
    assert ok(tool, developer, date="2024-02-28", hours=5) == {"date": "2024-02-28T05:00:00"}
    assert ok(tool, developer, date="2024-03-31T01:30:00+02:00", days=-1, minutes=-45) == {
        "date": "2024-03-30T00:45:00+02:00"
    }


def test_date_add_out_of_range_fails(developer):
    tool = make_tool(developer, "date_add")
    execution = failed(tool, developer, date="9999-12-31", days=1)
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert "out of range" in execution.error


# --- json_query ------------------------------------------------------------------------------------
def test_json_query(developer):
    tool = make_tool(developer, "json_query")
    data = {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 15}, {"name": "c", "price": 25}]}
    assert ok(tool, developer, data=data, expression="items[?price > `10`].name") == {"result": ["b", "c"]}
    assert ok(tool, developer, data=data, expression="length(items)") == {"result": 3}
    assert ok(tool, developer, data=data, expression="missing") == {"result": None}


def test_json_query_bad_expression_fails_clearly(developer):
    tool = make_tool(developer, "json_query")
    execution = failed(tool, developer, data={"a": 1}, expression="items[?")
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert execution.error.startswith("JMESPath error")


def test_json_query_type_error_fails_clearly(developer):
    tool = make_tool(developer, "json_query")
    execution = failed(tool, developer, data={"a": "text"}, expression="abs(a)")
    assert execution.error_kind == ErrorKind.TOOL_ERROR
    assert "JMESPath error" in execution.error


# --- text --------------------------------------------------------------------------------------------
def test_text_stats(developer):
    tool = make_tool(developer, "text_stats")
    assert ok(tool, developer, text="Hello big\nworld\n\nagain") == {"chars": 22, "words": 4, "lines": 4}
    assert ok(tool, developer, text="") == {"chars": 0, "words": 0, "lines": 0}


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("upper", "  HELLO WÖRLD, HI!  "),
        ("lower", "  hello wörld, hi!  "),
        ("title", "  Hello Wörld, Hi!  "),
        ("strip", "hello Wörld, HI!"),
        ("slugify", "hello-world-hi"),
        ("reverse", "  !IH ,dlröW olleh  "),
    ],
)
def test_text_transform(developer, operation, expected):
    tool = make_tool(developer, "text_transform")
    assert ok(tool, developer, text="  hello Wörld, HI!  ", operation=operation) == {"text": expected}


def test_text_transform_unknown_operation_is_an_argument_error(developer):
    tool = make_tool(developer, "text_transform")
    with pytest.raises(services.ToolArgumentsInvalid) as exc:
        run(tool, developer, text="x", operation="rot13")
    assert "arguments.operation" in exc.value.detail


def test_text_truncate(developer):
    tool = make_tool(developer, "text_truncate")
    assert ok(tool, developer, text="hello world", max_chars=8) == {"text": "hello w…", "truncated": True}
    assert ok(tool, developer, text="hello world", max_chars=8, suffix="...") == {
        "text": "hello...",
        "truncated": True,
    }
    assert ok(tool, developer, text="hello", max_chars=5) == {"text": "hello", "truncated": False}
    assert ok(tool, developer, text="hello world", max_chars=2, suffix="...") == {
        "text": "he",
        "truncated": True,
    }


def test_text_is_capped_at_100k_characters(developer):
    tool = make_tool(developer, "text_stats")
    assert ok(tool, developer, text="a" * 100_000)["chars"] == 100_000
    with pytest.raises(services.ToolArgumentsInvalid) as exc:
        run(tool, developer, text="a" * 100_001)
    assert "arguments.text" in exc.value.detail


def test_zoneinfo_is_available():
    """datetime_now needs the IANA database (system tzdata or the tzdata package)."""
    assert ZoneInfo("Europe/Berlin").key == "Europe/Berlin"


# --- API ----------------------------------------------------------------------------------------------
def test_api_create_and_execute_builtin(developer, client_for):
    client = client_for(developer)
    response = client.post(
        "/api/v1/tools",
        {"name": "calc", "type": "builtin", "config": {"function": "calculator"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["parameters_schema"]["required"] == ["expression"]

    response = client.post(
        f"/api/v1/tools/{body['id']}/execute", {"arguments": {"expression": "2*(3+4)"}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "succeeded"
    assert response.json()["result"] == {"result": 14}


def test_api_lists_builtin_type(developer, client_for):
    response = client_for(developer).get("/api/v1/tools/types")
    assert response.status_code == 200
    builtin = next(row for row in response.json() if row["type"] == "builtin")
    assert "calculator" in builtin["config_schema"]["properties"]["function"]["enum"]
