"""Maintenance mode (runtime setting MAINTENANCE_MODE): writes under /api/ answer 503."""

from agentmesh.core.exceptions import problem_response
from agentmesh.core.features import runtime_setting

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Still open while in maintenance: signing in (so an admin can switch it off), the system
# area (the config itself, flags, restart, cache, backups: admin only) and health.
OPEN_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/refresh"})
OPEN_PREFIXES = ("/api/v1/system/",)


class MaintenanceModeMiddleware:
    """While MAINTENANCE_MODE is on, POST/PUT/PATCH/DELETE under /api/ (apart from
    OPEN_PATHS, OPEN_PREFIXES) answer 503 in the error shape with code `maintenance_mode` and Retry-After;
    reads keep working, and so does the admin site (not under /api/)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method in WRITE_METHODS
            and request.path.startswith("/api/")
            and request.path.rstrip("/") not in OPEN_PATHS
            and not request.path.startswith(OPEN_PREFIXES)
            and runtime_setting("MAINTENANCE_MODE")
        ):
            return maintenance_response()
        return self.get_response(request)


def maintenance_response():
    message = runtime_setting("MAINTENANCE_MESSAGE") or "The service is in maintenance: writes are paused."
    detail = f"{message} Reads keep working; retry later."
    response = problem_response(503, detail, [{"field": None, "code": "maintenance_mode", "message": detail}])
    response["Retry-After"] = str(runtime_setting("MAINTENANCE_RETRY_AFTER_SECONDS"))
    return response
