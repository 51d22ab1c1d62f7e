from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    verbose_name = "Workflows"

    def ready(self) -> None:
        from . import tool_type  # noqa: F401  registers the `workflow` tool type
        from .engine import nodes  # noqa: F401  registers the node types
