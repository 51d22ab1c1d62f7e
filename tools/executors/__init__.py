"""Executors by tool type. Apps add their own types (agent, workflow) in AppConfig.ready().

Each type has a feature flag (`tool_type.<type>`, `mcp` for MCP tools): switched off, tools of
the type can be neither created nor executed (tools.services)."""

from agentmesh.core.features import register_feature, tool_type_flag

from .base import Check, ConfigInvalid, ErrorKind, Executor, ToolCall, ToolError, ToolOutput


class ExecutorRegistry:
    def __init__(self) -> None:
        self._executors: dict[str, Executor] = {}

    def register(self, executor: Executor) -> Executor:
        if not executor.type:
            raise ValueError("An executor needs a type.")
        self._executors[executor.type] = executor
        register_feature(tool_type_flag(executor.type), f"Tools of type {executor.type}: create and execute.")
        return executor

    def get(self, type_name: str) -> Executor:
        try:
            return self._executors[type_name]
        except KeyError:
            raise LookupError(f"Unknown tool type {type_name!r}.") from None

    def __contains__(self, type_name: str) -> bool:
        return type_name in self._executors

    def types(self) -> list[Executor]:
        return sorted(self._executors.values(), key=lambda e: e.type)


registry = ExecutorRegistry()

__all__ = [
    "Check",
    "ConfigInvalid",
    "ErrorKind",
    "Executor",
    "ExecutorRegistry",
    "ToolCall",
    "ToolError",
    "ToolOutput",
    "registry",
]
