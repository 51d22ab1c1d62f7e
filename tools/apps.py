import importlib
import pkgutil

from django.apps import AppConfig


class ToolsConfig(AppConfig):
    name = "tools"
    verbose_name = "Tools"

    def ready(self) -> None:
        # Each module of tools.executors registers its executor when imported; other apps
        # (agents, workflows) register theirs from their own ready().
        from . import executors

        for module in pkgutil.iter_modules(executors.__path__):
            if module.name != "base":
                importlib.import_module(f"{executors.__name__}.{module.name}")
