import sys

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpResponseBadRequest, JsonResponse

from .exceptions import problem_response, unavailable_dependency, unavailable_response
from .views import api_error_response

_KEEP_OUT = {"content-type", "content-length"}


def _remember_exception(sender, request=None, **kwargs) -> None:
    """Keep the exception Django turned into a 500 (with DEBUG its technical page replaces
    handler500), so an unreachable database still answers 503."""
    if request is not None:
        request._unhandled_exception = sys.exc_info()[1]


got_request_exception.connect(_remember_exception, dispatch_uid="agentmesh.core.remember_exception")


class RequestBodyLimitMiddleware:
    """Answer 413 before reading a body larger than MAX_REQUEST_BODY_BYTES."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(400, "Invalid Content-Length header.")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return problem_response(
                413, f"Request body exceeds the limit of {settings.MAX_REQUEST_BODY_BYTES} bytes."
            )
        return self.get_response(request)


class ApiErrorsAsJsonMiddleware:
    """Every error answer under /api/ is the JSON error shape, DEBUG or not.

    DRF views and the error handlers already answer JSON; this replaces what Django renders
    itself: the DEBUG technical 404/500 pages (used whatever handler404 says), a plain 405 of a
    non-DRF view, a 400 for a disallowed host; and an error the browsable API (DEBUG=1) would
    render as HTML is sent as its JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith("/api/")
            or "json" in response.get("Content-Type", "")
        ):
            return response
        exc = getattr(request, "_unhandled_exception", None)
        if response.status_code == 500 and unavailable_dependency(exc):
            return unavailable_response(exc)
        data = getattr(response, "data", None)  # a DRF error rendered as HTML (browsable API)
        if isinstance(data, dict) and data.get("status") == response.status_code and "errors" in data:
            replacement = JsonResponse(data, status=response.status_code)
        else:
            replacement = api_error_response(request, response.status_code)
        for header, value in response.items():
            if header.lower() not in _KEEP_OUT:
                replacement[header] = value
        # Not response.close(): that sends request_finished, which the server sends for the reply.
        return replacement


class QueryStringNULMiddleware:
    """Answer 400 to a query string holding a NUL character (`%00`): no database text column
    can compare with it (PostgreSQL refuses the query: a 500 in every search and filter)."""

    message = "Query parameters may not contain the NUL character (%00)."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "%00" in request.META.get("QUERY_STRING", ""):
            for name, values in request.GET.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    return self._refuse(request, name if "\x00" not in name else None)
        return self.get_response(request)

    def _refuse(self, request, name: str | None):
        if not request.path.startswith("/api/"):
            return HttpResponseBadRequest(self.message)
        detail = f"Invalid input: {name}: {self.message}" if name else self.message
        error = {"field": name, "code": "null_characters_not_allowed", "message": self.message}
        return problem_response(400, detail, [error])
