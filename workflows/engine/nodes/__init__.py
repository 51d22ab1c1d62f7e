"""Node handlers by type, behind one registry (see base.py for the interface)."""

from . import basic, calls, control  # noqa: F401  register the built-in node types
from .base import DefinitionInvalid, Done, NodeHandler, StepContext, StepError, Wait, registry

__all__ = ["DefinitionInvalid", "Done", "NodeHandler", "StepContext", "StepError", "Wait", "registry"]
