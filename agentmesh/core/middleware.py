from django.conf import settings
from django.http import HttpResponseBadRequest

from .exceptions import problem_response


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
