"""Small helpers that read configuration from the environment."""

import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def cache_from_url(url: str, base_dir: Path) -> dict:
    """Translate CACHE_URL (redis://, rediss://, locmem://, file://, dummy://) to CACHES."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme in {"redis", "rediss"}:
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url.split("?")[0],
            "KEY_PREFIX": options.get("prefix", "agentmesh"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    if parts.scheme == "locmem":
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": parts.netloc or "agentmesh",
        }
    if parts.scheme == "file":
        location = parts.path or str(base_dir / "var" / "cache")
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": location}
    if parts.scheme == "dummy":
        return {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    raise ImproperlyConfigured(f"Unsupported CACHE_URL scheme {parts.scheme!r}")
