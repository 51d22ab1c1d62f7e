"""Reads of runtime configuration and feature flags (the API and the admin show these)."""

from django.conf import settings

from agentmesh.core.features import FEATURES, SETTINGS

from ..models import FeatureFlag
from ..services.config import STORED, type_name
from ..services.flags import FlagNotFound


# --- runtime configuration ------------------------------------------------------------
def config_values() -> list[dict]:
    """Every key with its value in force, default, type, range and description."""
    stored = STORED.get()
    out = []
    for key, setting in SETTINGS.items():
        default = setting.default()
        out.append(
            {
                "key": key,
                "value": stored.get(key, default),
                "default": default,
                "overridden": key in stored,
                "type": type_name(setting),
                "min": setting.min,
                "max": setting.max,
                "max_length": setting.max_length,
                "section": setting.section,
                "description": setting.description,
            }
        )
    return out


def config_effective_settings() -> dict:
    """Read-only settings that matter to an operator (no secrets, no URL with a password)."""
    from django.db import connection

    broker = settings.CELERY_BROKER_URL.split(":", 1)[0] or "unknown"
    database = settings.DATABASES["default"]
    pool = (database.get("OPTIONS") or {}).get("pool") or {}
    cache_backend = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return {
        "run_mode": "embedded" if broker == "filesystem" else "production",
        "debug": bool(settings.DEBUG),
        "broker": broker,
        "tasks_eager": bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)),
        "database_vendor": connection.vendor,
        "database_pool": (
            {"min_size": pool.get("min_size"), "max_size": pool.get("max_size")}
            if isinstance(pool, dict) and pool
            else None
        ),
        "database_conn_max_age": database.get("CONN_MAX_AGE") or 0,
        "cache_backend": cache_backend,
        "time_zone": settings.TIME_ZONE,
        "log_level": settings.LOG_LEVEL,
        "log_format": settings.LOG_FORMAT,
        "allowed_hosts": list(settings.ALLOWED_HOSTS),
        "max_request_body_bytes": settings.MAX_REQUEST_BODY_BYTES,
        "api_page_size": settings.REST_FRAMEWORK.get("PAGE_SIZE"),
        "api_max_page_size": settings.API_MAX_PAGE_SIZE,
        "jwt_access_minutes": int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() // 60),
        "jwt_refresh_days": settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].days,
        "login_lockout_enabled": bool(getattr(settings, "AXES_ENABLED", False)),
        "otlp_export": bool(getattr(settings, "OTEL_EXPORTER_OTLP_ENDPOINT", "")),
        "runtime_config_cache_seconds": settings.RUNTIME_CONFIG_CACHE_SECONDS,
    }


# --- feature flags ----------------------------------------------------------------------
def flag_state(name: str, flag: FeatureFlag | None) -> dict:
    feature = FEATURES[name]
    if flag is None:
        return {
            "name": name,
            "description": feature.description,
            "stored": False,
            "everyone": None,
            "state": "on",
            "percent": None,
            "users": [],
            "groups": [],
            "roles": [],
            "superusers": True,
            "staff": False,
            "authenticated": False,
            "note": "",
            "modified": None,
        }
    state = {True: "on", False: "off"}.get(flag.everyone, "targeted")
    return {
        "name": name,
        "description": feature.description,
        "stored": True,
        "everyone": flag.everyone,
        "state": state,
        "percent": float(flag.percent) if flag.percent is not None else None,
        "users": sorted(user.pk for user in flag.users.all()),
        "groups": sorted(group.name for group in flag.groups.all()),
        "roles": sorted(flag.roles or []),
        "superusers": flag.superusers,
        "staff": flag.staff,
        "authenticated": flag.authenticated,
        "note": flag.note,
        "modified": flag.modified,
    }


def flags_list() -> list[dict]:
    rows = {f.name: f for f in FeatureFlag.objects.prefetch_related("users", "groups")}
    return [flag_state(name, rows.get(name)) for name in sorted(FEATURES)]


def flag_get(name: str) -> dict:
    if name not in FEATURES:
        raise FlagNotFound(name)
    flag = FeatureFlag.objects.prefetch_related("users", "groups").filter(name=name).first()
    return flag_state(name, flag)
