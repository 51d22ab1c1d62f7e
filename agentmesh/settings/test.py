"""Test settings: SQLite and eager tasks unless DATABASE_URL / CELERY_BROKER_URL say otherwise."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import CACHES, DATABASE_CONN_MAX_AGE, DATABASES, REST_FRAMEWORK, VAR_DIR
from .env import env_bool

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file (not :memory:) so a real Celery worker subprocess can open the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}

if not os.environ.get("DATABASE_POOL_MAX_SIZE"):
    # The suite's own process (and its worker subprocesses) hold no pool: tests count connections.
    # A test of a served API asks for one.
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
    DATABASES["default"]["CONN_MAX_AGE"] = DATABASE_CONN_MAX_AGE

if not os.environ.get("CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
elif CACHES["default"]["BACKEND"].endswith("RedisCache"):
    # Each pytest-xdist worker gets a Redis database of its own: tests clear the cache.
    _worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    _base, _, _db = CACHES["default"]["LOCATION"].rpartition("/")
    CACHES["default"]["LOCATION"] = f"{_base}/{int(_db or 0) + _worker}"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Unit tests run tasks eagerly; the real-worker fixture starts workers with this set to 0.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", True)
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"auth": "1000/minute", "user": "100000/minute"}
# The suite logs in a lot from one address; the lockout tests switch it on (override_settings).
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", False)
# Tests run their fake LLM / HTTP servers on 127.0.0.1; the SSRF tests override this.
SAFE_HTTP_ALLOWLIST = ["127.0.0.1"]
FERNET_KEYS = ["ZmVybmV0LXRlc3Qta2V5LTAxMjM0NTY3ODlhYmNkZWY="]
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
LOGGING = {"version": 1, "disable_existing_loggers": False, "loggers": QUIET_LOGGERS}  # noqa: F405
ROOT_URLCONF = "tests.testapp.urls"
# Tests read what a request recorded right after it: flush the observability buffer every time.
OBSERVABILITY_FLUSH_SECONDS = float(os.environ.get("OBSERVABILITY_FLUSH_SECONDS", "0"))
# Each test starts with nothing stored (tests/conftest.py) and a write drops the copy, so the
# per-process copy of runtime settings and flags never needs to expire within a test (an expiry
# would add queries to the query-count tests); tests of the bound set their own.
RUNTIME_CONFIG_CACHE_SECONDS = float(os.environ.get("RUNTIME_CONFIG_CACHE_SECONDS", "3600"))
# Backups (POST /system/backup, also when fuzzed by the contract tests) go to a temporary
# directory of this process, removed when it exits (a test's worker subprocess gets BACKUP_DIR).
if not os.environ.get("BACKUP_DIR"):
    BACKUP_DIR = Path(tempfile.mkdtemp(prefix="agentmesh-test-backups-"))
    atexit.register(shutil.rmtree, BACKUP_DIR, True)
