from django.conf import settings

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
