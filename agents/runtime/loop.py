"""The tool-calling loop (ARCHITECTURE §5): call the model; while it asks for tools, run them
(through the tools service, concurrently up to a cap) and feed the results back; stop at the
first limit. Every message is stored as it is produced, so a stopped run keeps its output."""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Max, Sum
from django.utils import timezone

from agentmesh.core import sandbox
from agentmesh.core.features import FeatureUnavailable, runtime_setting
from agents.llm.base import ChatRequest, ChatResponse, LLMError, ToolCallRequest
from agents.models import (
    AgentRun,
    AgentRunStep,
    AgentVersion,
    Message,
    RunStatus,
    StepKind,
    StopReason,
)
from masterdata.models import ModelConfig
from observability.services import event_record, span_end, span_start, use_span
from tools.models import CallerType, ExecutionStatus, Tool
from tools.services import ToolArgumentsInvalid, ToolNotDeployed, tool_execute

from .limits import Budget, LimitReached

logger = logging.getLogger(__name__)

Emit = Callable[[str, dict], None]

# (run id, depth) of the run whose tool calls are executing: an `agent` tool reads it.
current_run: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "agent_run", default=None
)


# What a finished run writes back (everything else was set when it started).
RUN_RESULT_FIELDS = [
    "status",
    "stop_reason",
    "error",
    "output",
    "output_json",
    "trace_id",
    "duration_ms",
    "finished_at",
    "turns",
    "tool_calls",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "updated_at",
]


def _noop(event: str, data: dict) -> None:
    pass


def approx_tokens(text: str | None) -> int:
    return len(text or "") // 4 + 1


@dataclass
class _Conversation:
    run: AgentRun
    next_seq: int

    def append(self, message: dict[str, Any]) -> Message:
        row = Message.objects.create(
            conversation_id=self.run.conversation_id,
            run=self.run,
            seq=self.next_seq,
            role=message["role"],
            content=message.get("content"),
            tool_calls=message.get("tool_calls"),
            tool_call_id=message.get("tool_call_id", ""),
        )
        self.next_seq += 1
        self.run.added_messages.append(row)
        return row


def _history(run: AgentRun, memory: dict) -> list[dict]:
    """Earlier messages of the conversation inside the memory window (oldest first)."""
    max_messages = memory.get("max_messages") or settings.AGENTS_DEFAULT_HISTORY_MESSAGES
    rows = list(
        Message.objects.filter(conversation_id=run.conversation_id)
        .exclude(run=run)
        .order_by("-seq")[:max_messages]
    )
    rows.reverse()
    messages = [m.as_chat() for m in rows]
    max_tokens = memory.get("max_tokens")
    if max_tokens:
        while messages and sum(approx_tokens(m.get("content")) for m in messages) > max_tokens:
            messages.pop(0)
    # A window must not open on tool results whose assistant request fell outside it.
    while messages and messages[0]["role"] == "tool":
        messages.pop(0)
    return messages


def _system_prompt(snapshot: dict, variables: dict) -> str:
    template = snapshot.get("system_prompt") or ""
    if not template:
        return ""
    return sandbox.render(template, {**snapshot.get("prompt_variables", {}), **variables})


def _tool_specs(snapshot: dict, budget: Budget) -> list[dict]:
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t.get("parameters_schema") or {"type": "object", "properties": {}},
            },
        }
        for t in snapshot.get("tools", [])
        if budget.tool_allowed(t["name"])
    ]


def _spent_today(run: AgentRun) -> Decimal:
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    total = (
        AgentRun.objects.filter(agent_id=run.agent_id, created_at__gte=start)
        .exclude(pk=run.pk)
        .aggregate(total=Sum("cost_usd"))["total"]
    )
    return total or Decimal("0")


@functools.lru_cache(maxsize=256)
def _version_snapshot(version_id) -> tuple[int, dict]:
    """(version number, snapshot) of an AgentVersion; versions are immutable."""
    version = AgentVersion.objects.only("version", "snapshot").get(pk=version_id)
    return version.version, version.snapshot


class RunLoop:
    def __init__(
        self,
        run: AgentRun,
        *,
        emit: Emit | None = None,
        stream: bool = False,
        new_conversation: bool = False,
    ):
        self.run = run
        run.added_messages = []  # the Message rows this run adds, in order (the interact answer)
        self.version_number, self.snapshot = _version_snapshot(run.version_id)
        self.new_conversation = new_conversation  # no earlier messages to read
        self.emit = emit or _noop
        self.stream = stream
        self.budget = Budget(
            limits=self.snapshot.get("limits") or {},
            default_timeout=runtime_setting("AGENTS_DEFAULT_TIMEOUT_SECONDS"),
            default_max_turns=runtime_setting("AGENTS_DEFAULT_MAX_TURNS"),
            defaults={  # runtime settings; 0: no limit
                "max_tool_calls": runtime_setting("AGENTS_DEFAULT_MAX_TOOL_CALLS") or None,
                "max_output_tokens": runtime_setting("AGENTS_DEFAULT_MAX_OUTPUT_TOKENS") or None,
                "max_cost_usd_per_run": runtime_setting("AGENTS_DEFAULT_MAX_COST_USD_PER_RUN") or None,
            },
        )
        self.tools_by_name = {t["name"]: t for t in self.snapshot.get("tools", [])}
        self.step_seq = 0
        self.output = ""

    # --- entry ------------------------------------------------------------------------------
    def execute(self) -> AgentRun:
        run = self.run
        handle = span_start(
            f"invoke_agent {self.snapshot['agent']['name']}",
            kind="agent",
            persist=run.background,  # a worker's run shows as running while it runs
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.id": str(run.agent_id),
                "gen_ai.agent.name": self.snapshot["agent"]["name"],
                "gen_ai.conversation.id": str(run.conversation_id),
                "agentmesh.run.id": str(run.pk),
                "agentmesh.agent.version": self.version_number,
            },
        )
        run.trace_id = handle.trace_id
        t0 = time.perf_counter()
        token = current_run.set((str(run.pk), run.depth))
        try:
            with use_span(handle):
                self._run()
        finally:
            current_run.reset(token)
            run.duration_ms = (time.perf_counter() - t0) * 1000
            run.finished_at = timezone.now()
            run.turns, run.tool_calls = self.budget.turns, self.budget.tool_calls
            run.input_tokens, run.output_tokens = self.budget.input_tokens, self.budget.output_tokens
            run.cost_usd = self.budget.cost
            run.output = self.output
            run.save(update_fields=RUN_RESULT_FIELDS)
            span_end(
                handle,
                status="error" if run.status == RunStatus.FAILED else "ok",
                error=run.error if run.status == RunStatus.FAILED else "",
                attributes={
                    "gen_ai.usage.input_tokens": run.input_tokens,
                    "gen_ai.usage.output_tokens": run.output_tokens,
                    "agentmesh.cost_usd": str(run.cost_usd),
                    "agentmesh.run.status": run.status,
                    "agentmesh.run.stop_reason": run.stop_reason,
                },
            )
        return run

    def _run(self) -> None:
        run = self.run
        if self.new_conversation:
            conversation = _Conversation(run, 1)
        else:
            last_seq = Message.objects.filter(conversation_id=run.conversation_id).aggregate(m=Max("seq"))[
                "m"
            ]
            conversation = _Conversation(run, (last_seq or 0) + 1)
        new_messages = run.input.get("messages", [])
        try:
            self._check_rate_limit()
            if self.budget.limits.get("max_cost_usd_per_day"):
                self.budget.spent_today_before = _spent_today(run)
            self.budget.check_input([str(m.get("content") or "") for m in new_messages])
            self.budget.check_tokens_and_cost()
            history = [] if self.new_conversation else _history(run, self.snapshot.get("memory") or {})
            system = _system_prompt(self.snapshot, run.input.get("variables") or {})
            for message in new_messages:
                conversation.append(message)
            messages = ([{"role": "system", "content": system}] if system else []) + history + new_messages
            self._loop(messages, conversation)
            self._finish(RunStatus.SUCCEEDED, StopReason.COMPLETED)
        except LimitReached as limit:
            status = (
                RunStatus.CANCELLED if limit.stop_reason == StopReason.CANCELLED else RunStatus.INCOMPLETE
            )
            self._finish(status, limit.stop_reason, str(limit))
        except LLMError as exc:
            self._finish(RunStatus.FAILED, StopReason.ERROR, f"Model call failed ({exc.kind}): {exc}")
        except sandbox.TemplateProblem as exc:
            self._finish(RunStatus.FAILED, StopReason.ERROR, f"System prompt: {exc}")
        except Exception as exc:  # the run must end in a state, whatever broke
            logger.exception("agent run %s crashed", run.pk)
            self._finish(RunStatus.FAILED, StopReason.ERROR, f"Internal error: {type(exc).__name__}")

    def _check_rate_limit(self) -> None:
        per_minute = self.budget.limits.get("requests_per_minute")
        if not per_minute:
            return
        since = timezone.now() - timedelta(minutes=1)
        recent = AgentRun.objects.filter(agent_id=self.run.agent_id, created_at__gte=since).exclude(
            pk=self.run.pk
        )
        if recent.count() >= per_minute:
            raise LimitReached(StopReason.RATE_LIMIT, f"The agent allows {per_minute} runs per minute.")

    def _finish(self, status: str, stop_reason: str, error: str = "") -> None:
        run = self.run
        run.status, run.stop_reason, run.error = status, stop_reason, error[:5000]
        if (
            status == RunStatus.SUCCEEDED
            and (self.snapshot.get("response_format") or {}).get("type") == "json_schema"
        ):
            try:
                run.output_json = json.loads(self.output)
            except ValueError:
                run.output_json = None
        if status == RunStatus.FAILED:
            event_record(
                type="agent.run.failed",
                level="warning",
                source="agents",
                actor=run.user_id,
                resource=run,
                message=run.error[:500],
                payload={"agent_id": str(run.agent_id), "stop_reason": stop_reason},
            )
        elif status == RunStatus.INCOMPLETE:
            event_record(
                type="agent.run.incomplete",
                source="agents",
                actor=run.user_id,
                resource=run,
                message=run.error[:500],
                payload={"agent_id": str(run.agent_id), "stop_reason": stop_reason},
            )

    # --- the loop ---------------------------------------------------------------------------
    def _cancelled(self) -> bool:
        return AgentRun.objects.filter(pk=self.run.pk, cancel_requested=True).exists()

    def _loop(self, messages: list[dict], conversation: _Conversation) -> None:
        model = ModelConfig.objects.get(pk=self.snapshot["model_config_id"])
        parameters = self.snapshot.get("parameters") or {}
        response_format = self.snapshot.get("response_format") or {}
        first_turn = True
        while True:
            # A cancel can only have been asked for once the run has been running a while.
            self.budget.check(cancelled=not first_turn and self._cancelled())
            first_turn = False
            request = ChatRequest(
                messages=messages,
                tools=_tool_specs(self.snapshot, self.budget),
                response_format=(
                    {
                        "type": "json_schema",
                        "json_schema": {"name": "output", "schema": response_format["schema"]},
                    }
                    if response_format.get("type") == "json_schema"
                    else None
                ),
                temperature=parameters.get("temperature"),
                top_p=parameters.get("top_p"),
                max_tokens=self.budget.max_tokens_for_next_call(parameters.get("max_tokens")),
                timeout=max(0.1, self.budget.remaining_seconds()),
            )
            response = self._call_model(model, request)
            self.budget.turns += 1
            self.budget.record_usage(
                response.usage.input_tokens, response.usage.output_tokens, response.cost_usd
            )
            assistant = response.as_message()
            conversation.append(assistant)
            messages.append(assistant)
            if response.content:
                self.output = response.content
            if not response.tool_calls:
                return
            try:
                self.budget.check_tokens_and_cost()
                results = self._run_tools(response.tool_calls)
            except LimitReached as limit:
                # Answer every requested call so the stored conversation stays well-formed.
                for call in response.tool_calls:
                    conversation.append(
                        {"role": "tool", "tool_call_id": call.id, "content": f"Not run: {limit}"}
                    )
                raise
            for result in results:
                conversation.append(result)
                messages.append(result)

    def _call_model(self, model: ModelConfig, request: ChatRequest) -> ChatResponse:
        from agents.llm.client import chat, chat_stream

        started = time.perf_counter()
        step = AgentRunStep(
            run=self.run, seq=self._next_step(), kind=StepKind.LLM, name=model.model_name or model.name
        )
        step.input = {
            "messages": len(request.messages),
            "tools": [t["function"]["name"] for t in request.tools],
        }
        try:
            if self.stream:
                response = None
                for delta in chat_stream(model, request):
                    if delta.content:
                        self.emit("message.delta", {"run_id": str(self.run.pk), "content": delta.content})
                    if delta.response is not None:
                        response = delta.response
                if response is None:
                    raise LLMError("The stream ended without a response.", kind="upstream")
            else:
                response = chat(model, request)
        except LLMError as exc:
            step.status, step.error = "failed", str(exc)[:5000]
            step.duration_ms = (time.perf_counter() - started) * 1000
            step.save()
            if exc.kind == "timeout" and self.budget.remaining_seconds() < 1:
                raise LimitReached(StopReason.TIMEOUT, f"The run exceeded {self.budget.timeout:g}s.") from exc
            raise
        step.name = response.model or step.name
        step.output = {
            "content": response.content,
            "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in response.tool_calls],
            "finish_reason": response.finish_reason,
            "fallback_used": response.fallback_used,
        }
        step.input_tokens, step.output_tokens = response.usage.input_tokens, response.usage.output_tokens
        step.cost_usd = response.cost_usd
        step.duration_ms = (time.perf_counter() - started) * 1000
        step.save()
        return response

    def _next_step(self) -> int:
        self.step_seq += 1
        return self.step_seq

    # --- tools ------------------------------------------------------------------------------
    def _run_tools(self, calls: list[ToolCallRequest]) -> list[dict]:
        """Tool results in the order the model asked for them; the limits are checked for
        each call before any of them runs."""
        for call in calls:
            self.budget.check_tool_call(call.name)
            self.budget.tool_calls += 1
        for call in calls:
            self.emit("tool_call.started", {"run_id": str(self.run.pk), "id": call.id, "name": call.name})
        cap = max(1, settings.AGENTS_TOOL_CONCURRENCY)
        if len(calls) == 1 or cap == 1:
            outcomes = [self._execute_tool(call) for call in calls]
        else:
            with ThreadPoolExecutor(max_workers=min(cap, len(calls))) as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, self._execute_in_thread, c) for c in calls
                ]
                outcomes = [f.result() for f in futures]
        results = []
        for call, (content, step) in zip(calls, outcomes, strict=True):
            step.seq = self._next_step()
            step.save()
            self.emit(
                "tool_call.completed",
                {"run_id": str(self.run.pk), "id": call.id, "name": call.name, "status": step.status},
            )
            results.append({"role": "tool", "tool_call_id": call.id, "content": content})
        return results

    def _execute_in_thread(self, call: ToolCallRequest) -> tuple[str, AgentRunStep]:
        try:
            return self._execute_tool(call)
        finally:
            connections.close_all()  # this thread's own connections

    def _execute_tool(self, call: ToolCallRequest) -> tuple[str, AgentRunStep]:
        """(content for the model, unsaved step). Errors go back to the model as text."""
        step = AgentRunStep(
            run=self.run, seq=0, kind=StepKind.TOOL, name=call.name, input={"arguments": call.arguments}
        )
        started = time.perf_counter()
        spec = self.tools_by_name.get(call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if spec is None:
            content, step.status = f"Error: there is no tool named {call.name}.", "failed"
        elif not isinstance(arguments, dict):
            content, step.status = "Error: the arguments are not a JSON object.", "failed"
        else:
            tool = Tool.objects.filter(pk=spec["id"]).first()
            try:
                if tool is None:
                    raise ToolNotDeployed(f"The tool {call.name} no longer exists.")
                execution = tool_execute(
                    tool=tool,
                    arguments=arguments,
                    actor=self.run.user,
                    caller_type=CallerType.AGENT_RUN,
                    caller_ref=str(self.run.pk),
                    require_deployed=True,
                    timeout_cap=max(0.1, self.budget.remaining_seconds()),
                )
                step.tool_execution = execution
                if execution.status == ExecutionStatus.SUCCEEDED:
                    content = (
                        execution.result
                        if isinstance(execution.result, str)
                        else json.dumps(execution.result)
                    )
                    step.output = execution.result
                else:
                    content, step.status = f"Error ({execution.error_kind}): {execution.error}", "failed"
            except ToolArgumentsInvalid as exc:
                detail = "; ".join(f"{field}: {msgs[0]}" for field, msgs in exc.detail.items())
                content, step.status = f"Error: invalid arguments: {detail}", "failed"
            except (ToolNotDeployed, *FeatureUnavailable) as exc:
                content, step.status = f"Error: {exc.detail}", "failed"
        if step.status == "failed":
            step.error = content[:5000]
        step.duration_ms = (time.perf_counter() - started) * 1000
        return content[: settings.AGENTS_MAX_TOOL_RESULT_CHARS], step
