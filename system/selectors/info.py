"""GET /system/info: what is running — versions, broker kind, run mode, time zone, features,
uptime. Never a secret, never a connection string (the broker and cache are named by kind).

Features come from *feature sources*: callables returning `[{"name", "enabled", "description"}]`.
The built-in source lists the optional integrations this installation has (SDKs installed,
exporters configured). The feature-flag registry plugs in with
`register_feature_source("flags", its_callable)` (one line in its AppConfig.ready or module).
"""

import importlib.util
import logging
import os
import platform
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import celery
import django
import kombu
from django.conf import settings
from django.db import connection

from .status import broker_transport

logger = logging.getLogger(__name__)

# Fallback for the process start when /proc is not there: when this module was first imported.
_IMPORTED_AT = time.time()

FeatureSource = Callable[[], list[dict]]
_feature_sources: dict[str, FeatureSource] = {}


def register_feature_source(name: str, source: FeatureSource) -> None:
    """Add (or replace) a source of features listed by GET /system/info under `source: name`."""
    _feature_sources[name] = source


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def optional_integrations() -> list[dict]:
    """The built-in feature source: optional integrations and the settings that switch them on."""
    return [
        {
            "name": "openai_sdk",
            "enabled": _installed("openai"),
            "description": "OpenAI-compatible model providers",
        },
        {"name": "anthropic_sdk", "enabled": _installed("anthropic"), "description": "Anthropic models"},
        {"name": "mcp", "enabled": _installed("mcp"), "description": "Tools on MCP servers"},
        {
            "name": "otlp_export",
            "enabled": bool(settings.OTEL_EXPORTER_OTLP_ENDPOINT),
            "description": "Spans exported to an OTLP collector",
        },
        {
            "name": "prometheus_token",
            "enabled": bool(settings.METRICS_TOKEN),
            "description": "Prometheus scrapes of /metrics with a bearer token",
        },
        {
            "name": "registration",
            "enabled": bool(getattr(settings, "REGISTRATION_OPEN", False)),
            "description": "Self-service sign-up (REGISTRATION_OPEN)",
        },
    ]


register_feature_source("integrations", optional_integrations)


def enabled_features() -> list[dict]:
    """Every feature of every source, with the source's name; a failing source is skipped."""
    out = []
    for source_name, source in list(_feature_sources.items()):
        try:
            for item in source():
                out.append(
                    {
                        "name": str(item["name"]),
                        "enabled": bool(item.get("enabled")),
                        "source": source_name,
                        "description": str(item.get("description", "")),
                    }
                )
        except Exception:
            logger.warning("feature source %s failed", source_name, exc_info=True)
    return out


def _pyproject_version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("agentmesh")
        except PackageNotFoundError:
            pass
        with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except Exception:
        return "unknown"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def git_commit(base: Path | None = None) -> str:
    """The checked-out commit, read from .git without running git (a worktree's `.git` file,
    loose refs and packed-refs are followed); GIT_COMMIT when set; "" when not a checkout."""
    if settings.GIT_COMMIT:
        return settings.GIT_COMMIT
    base = base or Path(settings.BASE_DIR)
    git = base / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        pointer = _read(git)
        if not pointer.startswith("gitdir:"):
            return ""
        git = (base / pointer.split(":", 1)[1].strip()).resolve()
    if not git.is_dir():
        return ""
    common = git
    if (git / "commondir").is_file():
        common = (git / _read(git / "commondir")).resolve()
    head = _read(git / "HEAD")
    if not head.startswith("ref:"):
        return head[:40]
    ref = head.split(":", 1)[1].strip()
    for folder in (git, common):
        value = _read(folder / ref)
        if value:
            return value[:40]
    for line in _read(common / "packed-refs").splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha[:40]
    return ""


def _database_version() -> str:
    try:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                return f"PostgreSQL {cursor.fetchone()[0]}"
        if connection.vendor == "sqlite":
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version}"
        return f"{connection.vendor} {'.'.join(map(str, connection.Database.version_info))}"
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def process_started_at() -> datetime:
    """When this process started (Linux: from /proc; elsewhere: when this module was imported)."""
    try:
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return datetime.fromtimestamp(boot + start_ticks / os.sysconf("SC_CLK_TCK"), tz=UTC)
    except Exception:
        return datetime.fromtimestamp(_IMPORTED_AT, tz=UTC)


def run_mode() -> str:
    if settings.SYSTEM_RUN_MODE in ("embedded", "production"):
        return settings.SYSTEM_RUN_MODE
    return "embedded" if broker_transport() in ("filesystem", "memory") else "production"


def system_info() -> dict:
    """Versions, broker kind, run mode, time zone, features and uptime of this process."""
    started = process_started_at()
    now = datetime.now(tz=UTC)
    return {
        "version": _pyproject_version(),
        "commit": git_commit() or None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "django": django.get_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "database": {"vendor": connection.vendor, "version": _database_version()},
        "broker": broker_transport(),
        "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "run_mode": run_mode(),
        "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE", ""),
        "debug": bool(settings.DEBUG),
        "time_zone": settings.TIME_ZONE,
        "use_tz": bool(settings.USE_TZ),
        "features": enabled_features(),
        "started_at": started,
        "uptime_seconds": round(max(0.0, (now - started).total_seconds()), 1),
        "pid": os.getpid(),
        "platform": sys.platform,
    }
