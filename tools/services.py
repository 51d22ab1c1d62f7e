"""Every write to tools, and the one way any caller (API, agent, workflow) executes a tool.

A call: arguments are validated against the tool's schema, a ToolExecution row records it
(secret-looking arguments redacted), the executor for the tool's type runs it under a span
with retries (idempotent calls, or when the tool opts in) inside the tool's time budget.
"""

import json
import logging
import re
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from agentmesh.core import crypto
from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.features import require_feature, tool_type_flag
from agentmesh.core.services import object_delete_keeping_history
from agentmesh.core.signals import snapshot
from agentmesh.core.tasks import enqueue_on_commit
from masterdata.models import Secret
from masterdata.services import check_json_schema, ensure_unique_per_owner, normalize_tags, secret_reveal
from observability.services import event_record, span_end, span_start, use_span

from .executors import Check, ConfigInvalid, ErrorKind, ToolCall, ToolError, ToolOutput, registry
from .models import NAME_PATTERN, CallerType, ExecutionStatus, Tool, ToolExecution, ToolStatus
from .selectors import unfinished_executions
from .testing import TEST_CASE_SCHEMA

logger = logging.getLogger(__name__)

# What callers may set, in display order (the API serializer and the admin form use it too).
TOOL_FIELDS = (
    "name",
    "description",
    "category",
    "type",
    "parameters_schema",
    "output_schema",
    "config",
    "tags",
    "timeout_seconds",
    "max_retries",
    "retry_non_idempotent",
    "test_cases",
)
# A change to any of these is a new version that must be validated and deployed again.
BEHAVIOUR_FIELDS = {"type", "parameters_schema", "output_schema", "config", "timeout_seconds", "name"}
MAX_RETRIES = 5
MAX_TEST_CASES = 50
REDACTED = "***"
SENSITIVE_ARGUMENT = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|credential", re.I)


class ToolArgumentsInvalid(ServiceValidationError):
    """The arguments do not satisfy the tool's parameters schema."""


class ToolNotDeployed(ConflictError):
    pass


# --- create / update ------------------------------------------------------------------------
def _unique_slug(tool: Tool) -> str:
    base = slugify(tool.name)[:60] or "tool"
    slug, n = base, 2
    others = Tool.objects.filter(owner_id=tool.owner_id).exclude(pk=tool.pk)
    while others.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _apply_default_schemas(tool: Tool, executor, previous: Tool | None) -> None:
    old = registry.get(previous.type) if previous is not None and previous.type in registry else None
    for attr, default_of in (
        ("parameters_schema", "default_parameters_schema"),
        ("output_schema", "default_output_schema"),
    ):
        current = getattr(tool, attr)
        old_default = getattr(old, default_of)(previous.config) if old is not None else None
        if not current or (old_default is not None and current == old_default):
            fallback = {"type": "object", "properties": {}} if attr == "parameters_schema" else None
            setattr(tool, attr, getattr(executor, default_of)(tool.config) or fallback)


def first_config_error(executor, config: Any) -> ConfigInvalid | None:
    """The first JSON Schema error of `config` (in a stable order), or None."""
    errors = sorted(Draft202012Validator(executor.config_schema).iter_errors(config), key=str)
    if not errors:
        return None
    return ConfigInvalid(errors[0].message, field=".".join(str(p) for p in errors[0].absolute_path))


def _validate_tool(tool: Tool, *, previous: Tool | None = None) -> None:
    """Check the whole tool. Schemas the tool left to its type (empty, or still the previous
    config's default) follow the type's defaults for the new config."""
    if not re.match(NAME_PATTERN, tool.name or ""):
        raise ServiceValidationError(
            "Use 1-64 letters, digits, underscores or hyphens (the function name models see).", field="name"
        )
    if tool.type not in registry:
        known = ", ".join(e.type for e in registry.types())
        raise ServiceValidationError(f"Unknown tool type {tool.type!r}; one of: {known}.", field="type")
    require_feature(tool_type_flag(tool.type), tool.owner)  # the type's feature flag: 503/403
    executor = registry.get(tool.type)
    if not isinstance(tool.config, dict):
        raise ServiceValidationError("The config must be an object.", field="config")
    error = first_config_error(executor, tool.config)
    if error is None:
        try:
            executor.check_config(tool.config, owner=tool.owner)
        except ConfigInvalid as exc:
            error = exc
    if error is not None:
        raise ServiceValidationError(str(error), field=".".join(filter(None, ["config", error.field])))
    _apply_default_schemas(tool, executor, previous)
    check_json_schema(tool.parameters_schema, "parameters_schema")
    if tool.parameters_schema.get("type", "object") != "object":
        raise ServiceValidationError(
            'The arguments schema must have "type": "object".', field="parameters_schema"
        )
    check_json_schema(tool.output_schema, "output_schema")
    if not 1 <= tool.timeout_seconds <= settings.TOOLS_MAX_TIMEOUT_SECONDS:
        raise ServiceValidationError(
            f"Between 1 and {settings.TOOLS_MAX_TIMEOUT_SECONDS} seconds.", field="timeout_seconds"
        )
    if tool.max_retries > MAX_RETRIES:
        raise ServiceValidationError(f"At most {MAX_RETRIES}.", field="max_retries")
    if len(tool.category or "") > Tool._meta.get_field("category").max_length:
        raise ServiceValidationError("At most 100 characters.", field="category")
    tool.tags = normalize_tags(tool.tags)
    check_test_cases(tool.test_cases)
    ensure_unique_per_owner(tool, "name")


def check_test_cases(cases: Any, *, field: str = "test_cases") -> None:
    if not isinstance(cases, list):
        raise ServiceValidationError("A list of test cases.", field=field)
    if len(cases) > MAX_TEST_CASES:
        raise ServiceValidationError(f"At most {MAX_TEST_CASES} test cases.", field=field)
    validator = Draft202012Validator(TEST_CASE_SCHEMA)
    for index, case in enumerate(cases):
        error = next(iter(validator.iter_errors(case)), None)
        if error is not None:
            path = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
            raise ServiceValidationError(error.message, field=f"{field}[{index}]{path}")


def raise_no_test_cases() -> None:
    raise ServiceValidationError(
        "The tool has no stored test cases: give arguments or cases.", field="cases", code="required"
    )


def parse_days(value: str | None, *, default: int = 30) -> int:
    if value in (None, ""):
        return default
    # Up to 3 ASCII digits: str.isdigit() admits "²", and int() refuses 4301+ digits (500s).
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or not 1 <= int(value) <= 365:
        raise ServiceValidationError("A whole number of days from 1 to 365.", field="days")
    return int(value)


def sync_wait_seconds() -> float:
    return float(settings.TOOLS_SYNC_MAX_SECONDS)


@transaction.atomic
def tool_create(*, owner, name: str, type: str, **fields: Any) -> Tool:  # noqa: A002
    unknown = set(fields) - set(TOOL_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected tool fields: {sorted(unknown)}")
    tool = Tool(owner=owner, name=(name or "").strip(), type=type, **fields)
    _validate_tool(tool)
    tool.slug = _unique_slug(tool)
    tool.save()
    audited("create", tool)
    return tool


@transaction.atomic
def tool_update(*, tool: Tool, **fields: Any) -> Tool:
    unknown = set(fields) - set(TOOL_FIELDS)
    if unknown:
        raise TypeError(f"Unexpected tool fields: {sorted(unknown)}")
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    before = snapshot(tool)
    previous = Tool(type=tool.type, config=tool.config)
    changed = {name for name, value in fields.items() if getattr(tool, name) != value}
    for name in changed:
        setattr(tool, name, fields[name])
    if "name" in fields:
        tool.name = (tool.name or "").strip()
    _validate_tool(tool, previous=previous)
    if changed & BEHAVIOUR_FIELDS:
        tool.version += 1
        tool.status = ToolStatus.DRAFT
        tool.validated_at = None
        tool.validation_report = []
    if "name" in changed:
        tool.slug = _unique_slug(tool)
    tool.save()
    audited("update", tool, before=before)
    return tool


# --- validate / deploy ----------------------------------------------------------------------
def tool_validate(*, tool: Tool, actor) -> list[Check]:
    """Static and live checks; a tool whose checks all pass becomes `validated`."""
    checks = _static_checks(tool)
    if all(c.ok for c in checks):
        try:
            checks.extend(registry.get(tool.type).live_checks(tool, actor=actor))
        except Exception as exc:  # a live check that crashes is a failed check, not a 500
            logger.warning("live checks of tool %s failed", tool.pk, exc_info=True)
            checks.append(Check("live", False, f"{type(exc).__name__}: {exc}"[:500]))
    ok = all(c.ok for c in checks)
    report = [{"name": c.name, "ok": c.ok, "message": c.message} for c in checks]
    with transaction.atomic():
        current = Tool.objects.select_for_update().get(pk=tool.pk)
        if current.version == tool.version:  # a concurrent edit makes this report stale
            before = snapshot(current)
            current.validation_report = report
            current.validated_at = timezone.now() if ok else None
            if current.status == ToolStatus.DRAFT and ok:
                current.status = ToolStatus.VALIDATED
            elif not ok and current.status != ToolStatus.DRAFT:
                current.status = ToolStatus.DRAFT
            current.save(update_fields=["validation_report", "validated_at", "status", "updated_at"])
            audited("validate", current, before=before, actor=actor)
            tool.status, tool.validated_at, tool.validation_report = (
                current.status,
                current.validated_at,
                report,
            )
    event_record(
        type="tool.validated" if ok else "tool.validation_failed",
        level="info" if ok else "warning",
        source="tools",
        actor=actor,
        resource=tool,
        payload={"failed": [c.name for c in checks if not c.ok], "version": tool.version},
    )
    return checks


def _static_checks(tool: Tool) -> list[Check]:
    checks = []
    try:
        Draft202012Validator.check_schema(tool.parameters_schema)
        checks.append(Check("parameters_schema", True))
    except SchemaError as exc:
        checks.append(Check("parameters_schema", False, exc.message))
    if tool.output_schema is not None:
        try:
            Draft202012Validator.check_schema(tool.output_schema)
            checks.append(Check("output_schema", True))
        except SchemaError as exc:
            checks.append(Check("output_schema", False, exc.message))
    try:
        executor = registry.get(tool.type)
        error = first_config_error(executor, tool.config)
        if error is not None:
            raise error
        executor.check_config(tool.config, owner=tool.owner)
        checks.append(Check("config", True))
    except (LookupError, ConfigInvalid) as exc:
        where = f" ({exc.field})" if getattr(exc, "field", "") else ""
        checks.append(Check("config", False, f"{exc}{where}"))
    return checks


@transaction.atomic
def tool_deploy(*, tool: Tool, actor=None) -> Tool:
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    if tool.status == ToolStatus.DEPLOYED:
        return tool
    if tool.status == ToolStatus.DRAFT:
        raise ConflictError("Only a validated tool can be deployed: run POST /validate first.")
    before = snapshot(tool)
    tool.status = ToolStatus.DEPLOYED
    tool.deployed_at = timezone.now()
    tool.save(update_fields=["status", "deployed_at", "updated_at"])
    audited("deploy", tool, before=before, actor=actor)
    event_record(
        type="tool.deployed", source="tools", actor=actor, resource=tool, payload={"version": tool.version}
    )
    return tool


@transaction.atomic
def tool_undeploy(*, tool: Tool, actor=None) -> Tool:
    """Take the tool out of production (`disabled`); deploying again needs no new validation."""
    tool = Tool.objects.select_for_update().get(pk=tool.pk)
    if tool.status == ToolStatus.DEPLOYED:
        before = snapshot(tool)
        tool.status = ToolStatus.DISABLED
        tool.save(update_fields=["status", "updated_at"])
        audited("undeploy", tool, before=before, actor=actor)
        event_record(type="tool.undeployed", source="tools", actor=actor, resource=tool)
    return tool


# --- execution ------------------------------------------------------------------------------
@transaction.atomic
def tool_delete(*, tool: Tool) -> None:
    """Delete the tool; its executions stay, readable by their callers (and admins), with the
    tool's name and version they ran with. Refused (409) while an execution is queued or
    running. Agents lose the tool from their (editable) tool list; deployed versions that
    name it fail that call with a clear error until redeployed."""
    object_delete_keeping_history(
        instance=tool,
        unfinished=unfinished_executions,
        what="queued or running execution(s)",
        advice="let them finish first",
    )


def validate_arguments(tool: Tool, arguments: Any) -> dict:
    """Raise ToolArgumentsInvalid naming the first offending argument."""
    if not isinstance(arguments, dict):
        raise ToolArgumentsInvalid("Arguments must be a JSON object.", field="arguments")
    error = next(
        iter(sorted(Draft202012Validator(tool.parameters_schema).iter_errors(arguments), key=str)), None
    )
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = next((name for name in error.validator_value if name not in error.instance), "")
            path = ".".join(filter(None, [path, missing]))
        raise ToolArgumentsInvalid(error.message, field=f"arguments.{path}" if path else "arguments")
    return arguments


def redact_arguments(schema: dict, arguments: Any) -> Any:
    """Arguments as stored: values of secret-looking or write-only properties become ***."""
    if isinstance(arguments, dict):
        props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
        out = {}
        for key, value in arguments.items():
            spec = props.get(key, {}) if isinstance(props, dict) else {}
            spec = spec if isinstance(spec, dict) else {}
            sensitive = (
                SENSITIVE_ARGUMENT.search(str(key))
                or spec.get("writeOnly")
                or spec.get("format") == "password"
            )
            out[key] = REDACTED if sensitive else redact_arguments(spec, value)
        return out
    if isinstance(arguments, list):
        items = (schema or {}).get("items", {}) if isinstance(schema, dict) else {}
        return [redact_arguments(items, item) for item in arguments]
    return arguments


def effective_timeout(tool: Tool, *, cap: float | None = None) -> float:
    timeout = min(float(tool.timeout_seconds), float(settings.TOOLS_MAX_TIMEOUT_SECONDS))
    return min(timeout, cap) if cap else timeout


def _new_execution(tool: Tool, arguments: dict, *, actor, caller_type: str, caller_ref: str, is_test: bool):
    """An unsaved execution row: a synchronous call writes it once, when it has finished."""
    return ToolExecution(
        tool=tool,
        tool_name=tool.name,
        tool_version=tool.version,
        user=actor if getattr(actor, "pk", None) else None,
        caller_type=caller_type,
        caller_ref=str(caller_ref or ""),
        arguments=redact_arguments(tool.parameters_schema, arguments),
        is_test=is_test,
    )


def _require_deployed(tool: Tool) -> None:
    if tool.status != ToolStatus.DEPLOYED:
        raise ToolNotDeployed(f"The tool {tool.name} is not deployed (status {tool.status}).")


def tool_execute(
    *,
    tool: Tool,
    arguments: Any,
    actor=None,
    caller_type: str = CallerType.USER,
    caller_ref: str = "",
    is_test: bool = False,
    require_deployed: bool = False,
    timeout_cap: float | None = None,
    idempotency_key: str = "",
) -> ToolExecution:
    """Validate the arguments and run the tool now; returns the finished execution.

    Failures of the tool are recorded on the execution (status failed/timed_out), never raised.
    Raises ToolArgumentsInvalid (before any row is written) and ToolNotDeployed.
    """
    if require_deployed:
        _require_deployed(tool)
    require_feature(tool_type_flag(tool.type), actor)  # the type's feature flag: 503/403
    arguments = validate_arguments(tool, arguments)
    execution = _new_execution(
        tool, arguments, actor=actor, caller_type=caller_type, caller_ref=caller_ref, is_test=is_test
    )
    return _run(
        execution,
        tool,
        arguments,
        actor=actor,
        timeout=effective_timeout(tool, cap=timeout_cap),
        idempotency_key=idempotency_key,
    )


def tool_execute_async(
    *,
    tool: Tool,
    arguments: Any,
    actor=None,
    caller_type: str = CallerType.USER,
    caller_ref: str = "",
    require_deployed: bool = False,
) -> ToolExecution:
    """Queue the call for a worker; the task carries only the execution id. Arguments wait
    encrypted on the row until the worker picks them up."""
    if require_deployed:
        _require_deployed(tool)
    require_feature(tool_type_flag(tool.type), actor)  # the type's feature flag: 503/403
    arguments = validate_arguments(tool, arguments)
    from .tasks import run_tool_execution

    with transaction.atomic():
        execution = _new_execution(
            tool, arguments, actor=actor, caller_type=caller_type, caller_ref=caller_ref, is_test=False
        )
        execution.pending_arguments = crypto.encrypt(json.dumps(arguments))
        execution.save()
        enqueue_on_commit(run_tool_execution, str(execution.pk))
    return execution


def tool_execution_run_queued(*, execution_id) -> ToolExecution | None:
    """Run a queued execution (the worker's side). Does nothing unless it is still queued."""
    with transaction.atomic():
        execution = (
            ToolExecution.objects.select_for_update(of=("self",))
            .select_related("tool", "user")
            .filter(pk=execution_id)
            .first()
        )
        if execution is None or execution.status != ExecutionStatus.QUEUED:
            return execution
        arguments = (
            json.loads(crypto.decrypt(execution.pending_arguments)) if execution.pending_arguments else {}
        )
        execution.status = ExecutionStatus.RUNNING
        execution.pending_arguments = ""
        execution.started_at = timezone.now()
        execution.save(update_fields=["status", "pending_arguments", "started_at", "updated_at"])
    tool = execution.tool
    return _run(execution, tool, arguments, actor=execution.user, timeout=effective_timeout(tool))


def _reveal_for(tool: Tool):
    def reveal(secret_id: str) -> str:
        secret = Secret.objects.filter(pk=secret_id).first()
        if secret is None:
            raise ToolError("The secret this tool references no longer exists.", kind=ErrorKind.CONFIG)
        # The reference was authorised when the tool was saved (and is re-checked by validate).
        return secret_reveal(secret=secret, actor=None, purpose=f"tool {tool.pk}")

    return reveal


def _may_retry(tool: Tool, executor) -> bool:
    return tool.max_retries > 0 and (tool.retry_non_idempotent or executor.is_idempotent(tool))


def _call_with_retries(tool: Tool, executor, call: ToolCall, execution: ToolExecution) -> ToolOutput:
    attempts = tool.max_retries + 1 if _may_retry(tool, executor) else 1
    retrying = Retrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(max(0.0, call.timeout - 0.5)),
        wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
        retry=retry_if_exception(lambda exc: isinstance(exc, ToolError) and exc.retryable),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            execution.attempt = attempt.retry_state.attempt_number
            if call.remaining() <= 0:
                raise ToolError(f"The tool did not finish within {call.timeout:g}s.", kind=ErrorKind.TIMEOUT)
            return executor.execute(call)
    raise AssertionError("unreachable")  # pragma: no cover


def _run(
    execution: ToolExecution, tool: Tool, arguments: dict, *, actor, timeout: float, idempotency_key: str = ""
) -> ToolExecution:
    executor = registry.get(tool.type)
    handle = span_start(
        f"execute_tool {tool.name}",
        kind="tool",
        actor=actor,
        persist=False,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool.name,
            "gen_ai.tool.type": tool.type,
            "gen_ai.tool.call.id": str(execution.pk),
            "agentmesh.tool.id": str(tool.pk),
            "agentmesh.tool.version": tool.version,
            "agentmesh.caller_type": execution.caller_type,
        },
    )
    execution.status = ExecutionStatus.RUNNING
    execution.started_at = execution.started_at or timezone.now()
    execution.trace_id = handle.trace_id
    t0 = time.perf_counter()
    call = ToolCall(
        tool=tool,
        arguments=arguments,
        timeout=timeout,
        actor=actor,
        reveal_secret=_reveal_for(tool),
        idempotency_key=idempotency_key,
    )
    with use_span(handle):
        try:
            result = _call_with_retries(tool, executor, call, execution)
            execution.status = ExecutionStatus.SUCCEEDED
            execution.result = _jsonable(result.output)
            execution.metadata = _jsonable(result.metadata) or {}
        except ToolError as exc:
            _fail(execution, str(exc), exc.kind, exc.details)
        except Exception as exc:  # an executor bug must not lose the record
            logger.exception("tool %s (%s) crashed", tool.pk, tool.type)
            _fail(execution, f"Internal error: {type(exc).__name__}", ErrorKind.INTERNAL, {})
    execution.duration_ms = (time.perf_counter() - t0) * 1000
    execution.finished_at = timezone.now()
    execution.save()
    failed = execution.status != ExecutionStatus.SUCCEEDED
    span_end(handle, status="error" if failed else "ok", error=execution.error if failed else "")
    if failed:
        event_record(
            type="tool.execution.failed",
            level="warning",
            source="tools",
            actor=actor,
            resource=execution,
            message=execution.error[:500],
            payload={
                "tool_id": str(tool.pk),
                "error_kind": execution.error_kind,
                "attempt": execution.attempt,
            },
        )
    return execution


def _fail(execution: ToolExecution, message: str, kind: str, details: dict) -> None:
    execution.status = ExecutionStatus.TIMED_OUT if kind == ErrorKind.TIMEOUT else ExecutionStatus.FAILED
    execution.error = message[:5000]
    execution.error_kind = kind
    if details:
        execution.metadata = _jsonable(details)


def _jsonable(value: Any) -> Any:
    """What JSONField can store: round-trip through JSON, with str() for the rest."""
    return json.loads(json.dumps(value, default=str))
