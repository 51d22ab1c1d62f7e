"""Base settings: everything lives here and is driven by the environment.

dev.py / test.py / prod.py only adjust defaults. See README "Configuration".
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url

from .env import cache_from_url, env_bool, env_int, env_list, env_str
from .keys import LEGACY_DEV_SECRET_KEY, fernet_key_from, load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("AGENTMESH_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Without SECRET_KEY in the environment (embedded mode, development) a random key is generated on
# first run and kept in VAR_DIR/secret_key (mode 0600); prod.py requires the environment variable.
SECRET_KEY = env_str("SECRET_KEY") or load_or_create_secret_key(VAR_DIR / "secret_key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "axes",
    "constance",  # runtime configuration storage (system.services.config)
    "waffle",  # feature flags: system.FeatureFlag is its flag model (system.services.flags)
    "agentmesh.core",
    "agentmesh.accounts",
    "observability",
    "masterdata",
    "tools",
    "agents",
    "workflows",
    "templates_app",
    "system",
    "integration",
]

MIDDLEWARE = [
    "observability.middleware.RequestContextMiddleware",
    "agentmesh.core.middleware.ApiErrorsAsJsonMiddleware",
    "agentmesh.core.middleware.RequestBodyLimitMiddleware",
    "agentmesh.core.middleware.QueryStringNULMiddleware",
    "system.middleware.MaintenanceModeMiddleware",  # writes under /api/ answer 503 while on
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns an admin login lockout into its page
]

ROOT_URLCONF = "agentmesh.urls"
WSGI_APPLICATION = "agentmesh.wsgi.application"
ASGI_APPLICATION = "agentmesh.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "agentmesh" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Without the pool (SQLite, DATABASE_POOL_MAX_SIZE=0, and the Celery worker and beat processes:
# agentmesh.core.db.use_persistent_connections) a thread keeps its connection this many seconds.
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'agentmesh.sqlite3'}"),
        conn_max_age=DATABASE_CONN_MAX_AGE,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (API, worker, beat) share the file: wait for locks instead of failing.
    # WAL with synchronous=NORMAL syncs at checkpoints rather than on every commit (safe
    # against application crashes; a power cut may lose the last commits).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side binding lets psycopg prepare the statements a connection repeats (after
    # DATABASE_PREPARE_THRESHOLD uses): the hot paths skip parse and plan on every call.
    # Behind PgBouncer in transaction mode (before 1.21) set DATABASE_PREPARE_THRESHOLD=off.
    threshold = env_str("DATABASE_PREPARE_THRESHOLD", "5")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "server_side_binding": env_bool("DATABASE_SERVER_SIDE_BINDING", True),
            "prepare_threshold": None if threshold.lower() in {"off", "none", ""} else int(threshold),
        }
    )
    # Django's backend, failing fast for a moment once the server could not be reached.
    DATABASES["default"]["ENGINE"] = "agentmesh.core.postgresql"
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5))
    # Under ASGI every request runs in a thread of its own, so a persistent per-thread connection
    # is never reused: API processes share a bounded pool per process instead (connections go
    # back at the end of each request; a request waits at most DATABASE_POOL_TIMEOUT seconds for
    # one, then answers 503). Size: API processes x max size + worker processes + beat stays
    # under PostgreSQL's max_connections (README "Database connections").
    _pool_max = env_int("DATABASE_POOL_MAX_SIZE", 10)
    if _pool_max > 0:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool requires it
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": min(env_int("DATABASE_POOL_MIN_SIZE", 2), _pool_max),
            "max_size": _pool_max,
            "timeout": float(env_str("DATABASE_POOL_TIMEOUT", "5")),
            # Give up reconnecting after this long and start again on the next request, so
            # the backoff between attempts stays short and recovery follows the server's return.
            "reconnect_timeout": 5.0,
            "name": "agentmesh",
        }

CACHES = {"default": cache_from_url(env_str("CACHE_URL", f"file://{VAR_DIR / 'cache'}"), BASE_DIR)}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out accounts and addresses
    "agentmesh.accounts.backends.UsernameOrEmailBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None  # no guardian anonymous user: the API requires authentication

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Serve static files (admin, Swagger UI assets) from the ASGI app itself; switch off when a
# reverse proxy serves STATIC_ROOT.
SERVE_STATIC = env_bool("SERVE_STATIC", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Request bodies above this many bytes are answered with 413.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- Client address, login lockout ------------------------------------------------------
# How many reverse proxies in front of the app append to X-Forwarded-For. 0: the header is
# ignored and the client address is REMOTE_ADDR (agentmesh.core.throttling.client_address).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# django-axes: after LOGIN_FAILURE_LIMIT failed logins for one account (from any address) or
# from one address (for any account), API and admin logins are refused for LOGIN_LOCKOUT_MINUTES
# (each further try restarts it). An admin unlocks with the user admin's "Unlock login" action
# or by deleting the Axes "Access attempts" rows.
AXES_ENABLED = env_bool("LOGIN_LOCKOUT_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "agentmesh.core.throttling.client_address"
AXES_USERNAME_CALLABLE = "agentmesh.accounts.lockout.lockout_username"
AXES_LOCKOUT_CALLABLE = "agentmesh.accounts.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = False  # a success from one address must not clear another's failures
AXES_DISABLE_ACCESS_LOG = True  # successful logins are recorded as observability events
AXES_VERBOSE = False

# --- REST framework ---------------------------------------------------------------------
API_MAX_PAGE_SIZE = 200
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "agentmesh.core.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "agentmesh.core.filters.FilterBackend",
        "rest_framework.filters.SearchFilter",
        "agentmesh.core.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "agentmesh.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "agentmesh.core.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only (no view uploads a file, so no multipart); other content types are a 415.
    "DEFAULT_PARSER_CLASSES": ["agentmesh.core.parsers.DepthLimitedJSONParser"],
    "DEFAULT_THROTTLE_RATES": {
        "auth": env_str("AUTH_THROTTLE_RATE", "10/minute"),
        "user": env_str("USER_THROTTLE_RATE", "1000/minute"),
    },
    "DEFAULT_THROTTLE_CLASSES": ["agentmesh.core.throttling.UserThrottle"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY", SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
}
REGISTRATION_OPEN = env_bool("REGISTRATION_OPEN", True)
MAX_JSON_DEPTH = env_int("MAX_JSON_DEPTH", 64)  # deeper request bodies are a 400

SPECTACULAR_SETTINGS = {
    "TITLE": "Agent Mesh API",
    "DESCRIPTION": "Define, deploy, run and watch AI agents, their tools and workflows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "SkillTypeEnum": "masterdata.models.SkillType",
        "ProviderEnum": "masterdata.models.Provider",
        "TemplateKindEnum": "templates_app.models.TemplateKind",
        "SpanKindEnum": "observability.models.SpanKind",
        "SystemComponentStateEnum": "system.api.status_serializers.COMPONENT_STATES",
        "SystemOverallStateEnum": "system.api.status_serializers.OVERALL_STATES",
    },
}

# --- Secrets encryption -----------------------------------------------------------------
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
FERNET_KEYS = env_list("FERNET_KEYS", [])
if not FERNET_KEYS:
    # Embedded/development fallback derived from SECRET_KEY (prod.py insists on explicit keys),
    # plus, to decrypt only, the key installs derived from the old public dev key: secrets they
    # stored stay readable until `manage.py rotate_secret_keys` re-encrypts them.
    FERNET_KEYS = list(dict.fromkeys([fernet_key_from(SECRET_KEY), fernet_key_from(LEGACY_DEV_SECRET_KEY)]))

# --- Outbound HTTP (agentmesh.core.safe_http) -------------------------------------------
SAFE_HTTP_ALLOWLIST = env_list("SAFE_HTTP_ALLOWLIST", [])  # hosts or CIDRs allowed despite SSRF rules
SAFE_HTTP_CONNECT_TIMEOUT = float(env_str("SAFE_HTTP_CONNECT_TIMEOUT", "5"))
SAFE_HTTP_READ_TIMEOUT = float(env_str("SAFE_HTTP_READ_TIMEOUT", "30"))
SAFE_HTTP_MAX_RESPONSE_BYTES = env_int("SAFE_HTTP_MAX_RESPONSE_BYTES", 10 * 1024 * 1024)
SAFE_HTTP_MAX_REDIRECTS = env_int("SAFE_HTTP_MAX_REDIRECTS", 5)

# --- Celery -----------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
CELERY_RESULT_BACKEND = None  # task state lives in our own tables
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "system.tasks.record_worker_heartbeat", "schedule": 30.0},
    "observability-evaluate-alert-rules": {
        "task": "observability.tasks.evaluate_alert_rules",
        "schedule": 60.0,
    },
    "observability-prune": {"task": "observability.tasks.prune_observability_data", "schedule": 3600.0},
    # every 5 s: a lost step message is re-sent within WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS + 5 s
    "workflows-reaper": {"task": "workflows.tasks.reap_workflows", "schedule": 5.0},
}

# --- System: backups -----------------------------------------------------------------------
# POST /api/v1/system/backup and `manage.py backup` write archives to BACKUP_DIR, or to the
# Django storage named by BACKUP_STORAGE (an alias of STORAGES, e.g. S3 through django-storages).
BACKUP_DIR = Path(env_str("BACKUP_DIR", str(VAR_DIR / "backups")))
BACKUP_STORAGE = env_str("BACKUP_STORAGE", "")
# After a backup succeeds, only the newest this many successful ones are kept (0: keep all).
BACKUP_RETENTION_COUNT = env_int("BACKUP_RETENTION_COUNT", 7)
# Wall-time limit of one backup job in a worker (the dump of a large database takes a while).
BACKUP_TIME_LIMIT_SECONDS = env_int("BACKUP_TIME_LIMIT_SECONDS", 3600)
# --- System: status and checks ----------------------------------------------------------
# GET /system/status is computed at most once per this many seconds in each API process.
SYSTEM_STATUS_CACHE_SECONDS = float(env_str("SYSTEM_STATUS_CACHE_SECONDS", "5"))
# Each network probe (cache, broker, worker ping/inspect, queue depths) runs in a thread with
# this deadline: one that hangs is reported "unknown" and the endpoint answers anyway.
SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS = float(env_str("SYSTEM_STATUS_PROBE_TIMEOUT_SECONDS", "2.5"))
# How long the worker broadcast (Celery inspect: stats, active tasks, queues) waits for replies.
SYSTEM_STATUS_WORKER_REPLY_SECONDS = float(env_str("SYSTEM_STATUS_WORKER_REPLY_SECONDS", "1"))
# Queues whose depth is reported besides the default queue and those the live workers consume.
SYSTEM_STATUS_QUEUES = env_list("SYSTEM_STATUS_QUEUES", [])
# Without a broadcast reply, a worker heartbeat row younger than this counts as a live worker.
SYSTEM_WORKER_HEARTBEAT_STALE_SECONDS = env_int("SYSTEM_WORKER_HEARTBEAT_STALE_SECONDS", 90)
# Beat publishes its tick task this often; no tick for SYSTEM_BEAT_SILENT_SECONDS: beat is down.
SYSTEM_BEAT_TICK_SECONDS = float(env_str("SYSTEM_BEAT_TICK_SECONDS", "5"))
SYSTEM_BEAT_SILENT_SECONDS = env_int("SYSTEM_BEAT_SILENT_SECONDS", 60)
# Built-in checks, evaluated by beat this often (and by GET /system/alerts when the last
# evaluation is older than twice this: a dead worker or beat cannot evaluate them itself).
SYSTEM_CHECKS_INTERVAL_SECONDS = env_int("SYSTEM_CHECKS_INTERVAL_SECONDS", 30)
SYSTEM_ALERT_QUEUE_BACKLOG = env_int("SYSTEM_ALERT_QUEUE_BACKLOG", 1000)  # messages in one queue
SYSTEM_ALERT_DATABASE_SLOW_MS = float(env_str("SYSTEM_ALERT_DATABASE_SLOW_MS", "500"))  # round trip
SYSTEM_ALERT_DISK_FREE_PERCENT = float(env_str("SYSTEM_ALERT_DISK_FREE_PERCENT", "10"))
SYSTEM_ALERT_DISK_PATHS = env_list("SYSTEM_ALERT_DISK_PATHS", [str(VAR_DIR)])
SYSTEM_ALERT_ERROR_RATE = float(env_str("SYSTEM_ALERT_ERROR_RATE", "0.05"))  # share of 5xx answers
SYSTEM_ALERT_ERROR_RATE_WINDOW_MINUTES = env_int("SYSTEM_ALERT_ERROR_RATE_WINDOW_MINUTES", 5)
SYSTEM_ALERT_ERROR_RATE_MIN_REQUESTS = env_int("SYSTEM_ALERT_ERROR_RATE_MIN_REQUESTS", 20)
# The user system alerts belong to (their webhooks receive alert.fired); default: the first
# active admin. Without any admin the checks still run and show in GET /system/alerts.
SYSTEM_ALERTS_OWNER = env_str("SYSTEM_ALERTS_OWNER", "")
# embedded | production; empty: embedded with the filesystem broker, production otherwise.
SYSTEM_RUN_MODE = env_str("SYSTEM_RUN_MODE", "")
# The deployed commit when the tree has no .git (container images); shown by GET /system/info.
GIT_COMMIT = env_str("GIT_COMMIT", "")
CELERY_BEAT_SCHEDULE.update(
    {
        "system-beat-tick": {
            "task": "system.tasks.record_beat_tick",
            "schedule": SYSTEM_BEAT_TICK_SECONDS,
            "options": {"expires": max(SYSTEM_BEAT_TICK_SECONDS * 2, 10)},
        },
        "system-evaluate-checks": {
            "task": "system.tasks.evaluate_system_checks",
            "schedule": float(SYSTEM_CHECKS_INTERVAL_SECONDS),
            "options": {"expires": SYSTEM_CHECKS_INTERVAL_SECONDS},
        },
    }
)

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json")  # json (one object per line) or plain
QUIET_LOGGERS = {
    "django.db.backends": {"level": "WARNING"},
    # httpx logs every request URL at INFO: query strings may carry credentials.
    "httpx": {"level": "WARNING"},
    "httpcore": {"level": "WARNING"},
    # The pool logs a line per reconnection attempt during an outage; the 503s are logged once a minute.
    "psycopg.pool": {"level": "ERROR"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "observability.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s"},
        "json": {"()": "observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        },
        # Records at or above this level are also kept in the database (GET /observability/logs).
        "database": {
            "class": "observability.logs.DatabaseLogHandler",
            "level": env_str("OBSERVABILITY_LOG_DB_LEVEL", "WARNING").upper(),
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["console", "database"], "level": LOG_LEVEL},
    "loggers": QUIET_LOGGERS,
}


# --- Observability ----------------------------------------------------------------------
OBSERVABILITY_LOG_DB_LEVEL = LOGGING["handlers"]["database"]["level"]
# In-process buffers (request samples, log records, metric counters) are written at most
# this often (0: at the end of every request/task, a constant two statements), and hold at
# most OBSERVABILITY_BUFFER_MAX entries each (oldest dropped first). Raise the interval to
# batch across requests on busy API processes.
OBSERVABILITY_FLUSH_SECONDS = float(env_str("OBSERVABILITY_FLUSH_SECONDS", "2"))
OBSERVABILITY_BUFFER_MAX = env_int("OBSERVABILITY_BUFFER_MAX", 10_000)
OBSERVABILITY_METRICS_CACHE_SECONDS = env_int("OBSERVABILITY_METRICS_CACHE_SECONDS", 15)
OBSERVABILITY_WEBHOOK_TIMEOUT = float(env_str("OBSERVABILITY_WEBHOOK_TIMEOUT", "10"))
OBSERVABILITY_ALERT_EVALUATION_STALE_SECONDS = env_int("OBSERVABILITY_ALERT_EVALUATION_STALE_SECONDS", 180)
OBSERVABILITY_PRUNE_BATCH_SIZE = env_int("OBSERVABILITY_PRUNE_BATCH_SIZE", 5000)
OBSERVABILITY_RETENTION_DAYS = {
    "events": env_int("OBSERVABILITY_RETENTION_EVENTS_DAYS", 90),
    "spans": env_int("OBSERVABILITY_RETENTION_SPANS_DAYS", 30),
    "logs": env_int("OBSERVABILITY_RETENTION_LOGS_DAYS", 14),
    "request_samples": env_int("OBSERVABILITY_RETENTION_REQUESTS_DAYS", 7),
    "alerts": env_int("OBSERVABILITY_RETENTION_ALERTS_DAYS", 90),
}
# Bearer token for Prometheus scrapes of /metrics (admins may also use their session/JWT).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# OTLP/HTTP collector base URL (spans go to <url>/v1/traces); empty: no OTLP export.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "agentmesh")

# --- Template sandbox (prompts, workflow expressions) ---------------------------------------
# Wall time of one render; checked cooperatively inside the render (agentmesh.core.sandbox).
SANDBOX_RENDER_TIMEOUT_SECONDS = float(env_str("SANDBOX_RENDER_TIMEOUT_SECONDS", "1"))

# --- Templates -----------------------------------------------------------------------------
# Import: the document's size, and how far YAML may expand (a "billion laughs" is a 400).
TEMPLATES_IMPORT_MAX_BYTES = env_int("TEMPLATES_IMPORT_MAX_BYTES", 1_048_576)
TEMPLATES_IMPORT_MAX_NODES = env_int("TEMPLATES_IMPORT_MAX_NODES", 100_000)
TEMPLATES_IMPORT_MAX_ALIASES = env_int("TEMPLATES_IMPORT_MAX_ALIASES", 1_000)

# --- Integration: flows and batch ----------------------------------------------------------
# Items one POST /integration/batch/agents or /batch/workflows may carry.
INTEGRATION_BATCH_MAX_ITEMS = env_int("INTEGRATION_BATCH_MAX_ITEMS", 100)

# --- Tools ----------------------------------------------------------------------------------
TOOLS_MAX_TIMEOUT_SECONDS = env_int("TOOLS_MAX_TIMEOUT_SECONDS", 300)
# `POST /tools/{id}/execute` without ?async waits at most this long (the call times out after).
TOOLS_SYNC_MAX_SECONDS = env_int("TOOLS_SYNC_MAX_SECONDS", 60)
TOOLS_MAX_RESPONSE_BYTES = env_int("TOOLS_MAX_RESPONSE_BYTES", 5 * 1024 * 1024)

# --- Agents ---------------------------------------------------------------------------------
# Limits that apply when an agent's constraints set none.
AGENTS_DEFAULT_MAX_TURNS = env_int("AGENTS_DEFAULT_MAX_TURNS", 10)
AGENTS_DEFAULT_TIMEOUT_SECONDS = env_int("AGENTS_DEFAULT_TIMEOUT_SECONDS", 300)
AGENTS_DEFAULT_HISTORY_MESSAGES = env_int("AGENTS_DEFAULT_HISTORY_MESSAGES", 50)
AGENTS_TOOL_CONCURRENCY = env_int("AGENTS_TOOL_CONCURRENCY", 4)  # tool calls of one turn run at once
AGENTS_MAX_TOOL_RESULT_CHARS = env_int("AGENTS_MAX_TOOL_RESULT_CHARS", 20_000)
AGENTS_MAX_DEPTH = env_int("AGENTS_MAX_DEPTH", 3)  # agent tools calling agents
AGENTS_CONVERSATION_WAIT_SECONDS = env_int("AGENTS_CONVERSATION_WAIT_SECONDS", 30)
AGENTS_STREAM_PING_SECONDS = float(env_str("AGENTS_STREAM_PING_SECONDS", "5"))

# --- Workflows ------------------------------------------------------------------------------
WORKFLOWS_MAX_NODES = env_int("WORKFLOWS_MAX_NODES", 500)
WORKFLOWS_MAX_EDGES = env_int("WORKFLOWS_MAX_EDGES", 2000)
WORKFLOWS_MAX_DEFINITION_BYTES = env_int("WORKFLOWS_MAX_DEFINITION_BYTES", 512 * 1024)
WORKFLOWS_DEFAULT_STEP_TIMEOUT_SECONDS = env_int("WORKFLOWS_DEFAULT_STEP_TIMEOUT_SECONDS", 300)
WORKFLOWS_MAX_STEP_TIMEOUT_SECONDS = env_int("WORKFLOWS_MAX_STEP_TIMEOUT_SECONDS", 3600)  # hard limit
WORKFLOWS_DEFAULT_RUN_TIMEOUT_SECONDS = env_int("WORKFLOWS_DEFAULT_RUN_TIMEOUT_SECONDS", 3600)
WORKFLOWS_MAX_RUN_TIMEOUT_SECONDS = env_int("WORKFLOWS_MAX_RUN_TIMEOUT_SECONDS", 7 * 24 * 3600)  # hard limit
WORKFLOWS_MAX_ATTEMPTS = env_int("WORKFLOWS_MAX_ATTEMPTS", 10)  # per node
WORKFLOWS_MAX_DEPTH = env_int("WORKFLOWS_MAX_DEPTH", 3)  # sub-workflows calling sub-workflows
WORKFLOWS_MAX_MAP_ITEMS = env_int("WORKFLOWS_MAX_MAP_ITEMS", 1000)
WORKFLOWS_MAX_LOOP_ITERATIONS = env_int("WORKFLOWS_MAX_LOOP_ITERATIONS", 100)
WORKFLOWS_MAX_RUNNING = env_int("WORKFLOWS_MAX_RUNNING", 1000)  # running executions, all workflows
WORKFLOWS_MAX_RUNNING_PER_WORKFLOW = env_int("WORKFLOWS_MAX_RUNNING_PER_WORKFLOW", 100)
WORKFLOWS_LEASE_GRACE_SECONDS = env_int("WORKFLOWS_LEASE_GRACE_SECONDS", 30)  # step timeout + this
# A running step renews its lease this often; a step whose lease (3 beats) ran out lost its worker.
WORKFLOWS_HEARTBEAT_SECONDS = float(env_str("WORKFLOWS_HEARTBEAT_SECONDS", "10"))
# A worker that finishes a step runs the one step it made ready itself (no broker hop)
WORKFLOWS_WORKER_CONTINUES = env_bool("WORKFLOWS_WORKER_CONTINUES", True)
WORKFLOWS_MAX_REDISPATCHES = env_int("WORKFLOWS_MAX_REDISPATCHES", 3)  # a lost worker's step, re-run
WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS = env_int("WORKFLOWS_REDISPATCH_QUEUED_AFTER_SECONDS", 10)
# SIGTERM: a step still running this long after is handed back (released and sent again)
WORKFLOWS_SHUTDOWN_GRACE_SECONDS = float(env_str("WORKFLOWS_SHUTDOWN_GRACE_SECONDS", "5"))
WORKFLOWS_SYNC_MAX_SECONDS = env_int("WORKFLOWS_SYNC_MAX_SECONDS", 30)
WORKFLOWS_EVENTS_MAX_SECONDS = env_int("WORKFLOWS_EVENTS_MAX_SECONDS", 3600)  # one SSE connection

# --- LLM providers ---
# Retries of a model call (408/409/429/5xx, timeouts, connection errors), bounded by the request's timeout.
LLM_MAX_RETRIES = env_int("LLM_MAX_RETRIES", 2)
# First backoff (s); it doubles with each retry, with jitter. A retry-after header replaces it.
LLM_RETRY_BACKOFF_SECONDS = float(env_str("LLM_RETRY_BACKOFF_SECONDS", "0.5"))
LLM_MAX_RETRY_WAIT_SECONDS = float(env_str("LLM_MAX_RETRY_WAIT_SECONDS", "10"))  # cap of any one wait
# Circuit breaker per model: open after this many consecutive failed calls (0: off), for the cooldown.
LLM_BREAKER_FAILURES = env_int("LLM_BREAKER_FAILURES", 5)
LLM_BREAKER_COOLDOWN_SECONDS = float(env_str("LLM_BREAKER_COOLDOWN_SECONDS", "30"))

# --- System: runtime config and flags --------------------------------------------------------
# GET/PUT /api/v1/system/config: settings that change without a restart (system.services.config
# has the registry: keys, types, ranges). Stored with django-constance's database backend; each
# process keeps what it read for at most this many seconds (a PUT, and POST
# /system/restart/config, drop the copy at once), so a change reaches every API and worker
# process within that bound. The defaults are the settings of the same name above.
RUNTIME_CONFIG_CACHE_SECONDS = float(env_str("RUNTIME_CONFIG_CACHE_SECONDS", "5"))
CONSTANCE_BACKEND = "constance.backends.database.DatabaseBackend"
CONSTANCE_DATABASE_CACHE_BACKEND = None  # our own per-process cache (above) bounds staleness
CONSTANCE_CONFIG: dict = {}  # filled from the registry at start-up (for constance's admin form)
CONSTANCE_IGNORE_ADMIN_VERSION_CHECK = False
# Admins by role (not only superusers) run the config page: it goes by the constance permissions,
# which the admin role holds (agentmesh.accounts.backends).
CONSTANCE_SUPERUSER_ONLY = False
# Agent limits applied when an agent's constraints set none (0: no limit); with
# AGENTS_DEFAULT_MAX_TURNS and AGENTS_DEFAULT_TIMEOUT_SECONDS above, runtime-configurable.
AGENTS_DEFAULT_MAX_TOOL_CALLS = env_int("AGENTS_DEFAULT_MAX_TOOL_CALLS", 0)
AGENTS_DEFAULT_MAX_OUTPUT_TOKENS = env_int("AGENTS_DEFAULT_MAX_OUTPUT_TOKENS", 0)
AGENTS_DEFAULT_MAX_COST_USD_PER_RUN = float(env_str("AGENTS_DEFAULT_MAX_COST_USD_PER_RUN", "0"))
# Maintenance mode (runtime config MAINTENANCE_MODE): the Retry-After of its 503s.
MAINTENANCE_RETRY_AFTER_SECONDS = env_int("MAINTENANCE_RETRY_AFTER_SECONDS", 300)
TRIGGER_THROTTLE_RATE = env_str("TRIGGER_THROTTLE_RATE", "60/minute")
# Feature flags (GET/PUT /api/v1/system/flags): django-waffle's flag model, swapped for ours
# (sticky percentage rollout by user, role targeting). A flag with no row is on.
WAFFLE_FLAG_MODEL = "system.FeatureFlag"
# waffle's own migrations would create its unused Flag tables too (see that package's docstring)
MIGRATION_MODULES = {"waffle": "system.waffle_migrations"}
WAFFLE_ENABLE_ADMIN_PAGES = False  # system.admin.config registers an audited flag admin
WAFFLE_CREATE_MISSING_FLAGS = False
WAFFLE_FLAG_DEFAULT = True
# --- System: metrics and control ------------------------------------------------------------
# The beat task `system.tasks.sample_system_metrics` records the history metrics (GET
# /system/metrics/history) this often, and prunes samples older than the retention.
SYSTEM_METRICS_INTERVAL = env_int("SYSTEM_METRICS_INTERVAL", 60)
SYSTEM_METRICS_RETENTION_DAYS = env_int("SYSTEM_METRICS_RETENTION_DAYS", 30)
# At most this many buckets in one history answer (`step` must be wide enough).
SYSTEM_METRICS_HISTORY_MAX_BUCKETS = env_int("SYSTEM_METRICS_HISTORY_MAX_BUCKETS", 1000)
# Queues whose depth GET /system/metrics reports, besides the default queue.
SYSTEM_METRICS_QUEUES = env_list("SYSTEM_METRICS_QUEUES", [])
# How long GET /system/metrics waits for the workers' process stats (seconds).
SYSTEM_METRICS_WORKER_TIMEOUT = float(env_str("SYSTEM_METRICS_WORKER_TIMEOUT", "1"))
# How long POST /system/restart/{service} waits for the workers' replies (seconds).
SYSTEM_CONTROL_REPLY_TIMEOUT = float(env_str("SYSTEM_CONTROL_REPLY_TIMEOUT", "2"))
# POST /system/restart/workers sends Celery's `pool_restart`, which a worker refuses unless
# this is on in ITS settings (the workers read the same settings module).
CELERY_WORKER_POOL_RESTARTS = env_bool("CELERY_WORKER_POOL_RESTARTS", True)
CELERY_BEAT_SCHEDULE["system-metrics-sample"] = {
    "task": "system.tasks.sample_system_metrics",
    "schedule": float(SYSTEM_METRICS_INTERVAL),
}
