"""One JSON error shape for every 4xx/5xx answer of the API.

{"type": "...", "title": "...", "status": 400, "detail": "...",
 "errors": [{"field": "name", "code": "required", "message": "This field is required."}]}
"""

import logging
import threading
import time
from http import HTTPStatus

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpResponse, JsonResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

ERROR_TYPE_BASE = "urn:agentmesh:error:"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


class ServiceValidationError(exceptions.ValidationError):
    """Raised by services for invalid input; `field` names the offending input."""

    def __init__(self, message: str, *, field: str = "non_field_errors", code: str = "invalid"):
        super().__init__({field: [message]}, code=code)


def _slug(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def problem(status_code: int, detail: str, errors: list[dict] | None = None) -> dict:
    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    return {
        "type": ERROR_TYPE_BASE + _slug(status_code),
        "title": title,
        "status": status_code,
        "detail": detail,
        "errors": errors or [],
    }


def problem_response(status_code: int, detail: str, errors: list[dict] | None = None) -> JsonResponse:
    return JsonResponse(problem(status_code, detail, errors), status=status_code)


def flatten_errors(data, prefix: str = "") -> list[dict]:
    """Turn DRF's nested error detail into [{"field", "code", "message"}]."""
    out: list[dict] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, int):  # ListField / ListSerializer item errors
                out.extend(flatten_errors(value, f"{prefix}[{key}]"))
                continue
            name = key if key != "non_field_errors" else ""
            field = f"{prefix}.{name}" if prefix and name else (prefix or name)
            out.extend(flatten_errors(value, field))
    elif isinstance(data, list):
        if all(isinstance(item, exceptions.ErrorDetail | str) for item in data):
            for item in data:
                out.append(
                    {"field": prefix or None, "code": getattr(item, "code", "invalid"), "message": str(item)}
                )
        else:
            for index, item in enumerate(data):
                if item:
                    out.extend(flatten_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out.append({"field": prefix or None, "code": getattr(data, "code", "invalid"), "message": str(data)})
    return out


# --- The database or the cache is unreachable ----------------------------------------------
# OperationalError/InterfaceError (connection refused or lost, the pool's timeout, which Django
# wraps as OperationalError) and a Redis cache that cannot be reached (the throttles read it on
# every request) answer 503 with Retry-After on every path, logged once a minute.
RETRY_AFTER_SECONDS = 5
_LOG_EVERY_SECONDS = 60.0
_unavailable_log = {"at": -_LOG_EVERY_SECONDS, "suppressed": 0}
_unavailable_lock = threading.Lock()


def unavailable_dependency(exc) -> str | None:
    """ "database" or "cache" when `exc` says that dependency cannot be reached, else None."""
    if isinstance(exc, OperationalError | InterfaceError):
        return "database"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "cache"
    return None


def _log_unavailable(dependency: str, exc) -> None:
    with _unavailable_lock:
        now = time.monotonic()
        if now - _unavailable_log["at"] < _LOG_EVERY_SECONDS:
            _unavailable_log["suppressed"] += 1
            return
        suppressed = _unavailable_log["suppressed"]
        _unavailable_log.update(at=now, suppressed=0)
    logger.warning(
        "%s unavailable, answering 503: %s: %s (%d more in the last minute not logged)",
        dependency,
        type(exc).__name__,
        str(exc).strip()[:300],
        suppressed,
    )


def unavailable_response(exc, *, api: bool = True) -> HttpResponse:
    """503 with Retry-After, in the error shape on API paths; logged here, not by Django."""
    dependency = unavailable_dependency(exc) or "database"
    _log_unavailable(dependency, exc)
    detail = f"The {dependency} is unavailable. Retry later."
    if api:
        response = problem_response(
            503, detail, [{"field": None, "code": f"{dependency}_unavailable", "message": detail}]
        )
    else:
        response = HttpResponse(detail, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response._has_been_logged = True  # django.utils.log.log_response: no error line per request
    return response


def _to_api_exception(exc):
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        err = exceptions.APIException("Request body is too large.")
        err.status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
        return err
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError(str(exc) or "Malformed request.")
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, ProtectedError | RestrictedError):
        names = sorted({type(o)._meta.verbose_name for o in getattr(exc, "protected_objects", [])} or set())
        detail = "This object is still referenced and cannot be deleted."
        if names:
            detail += " Referenced by: " + ", ".join(names) + "."
        return ConflictError(detail)
    return exc


def api_exception_handler(exc, context):
    if unavailable_dependency(exc):
        return unavailable_response(exc)
    exc = _to_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in API view", exc_info=exc)
        return Response(problem(500, "An internal error occurred."), status=500)
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(data)
        detail = "Invalid input."
        if errors and errors[0]["field"]:
            detail = f"Invalid input: {errors[0]['field']}: {errors[0]['message']}"
        elif errors:
            detail = errors[0]["message"]
    else:
        detail = str(data.get("detail", "")) if isinstance(data, dict) else str(data)
        code = getattr(getattr(exc, "detail", None), "code", None) or getattr(exc, "default_code", "error")
        errors = [{"field": None, "code": code, "message": detail}]
    response.data = problem(response.status_code, detail, errors)
    return response
