"""Local development and the embedded `make run` mode (DEBUG only when DEBUG=1 is set)."""

from .base import *  # noqa: F403
from .env import env_bool

DEBUG = env_bool("DEBUG", False)
