"""JSON error pages for URLs outside DRF views (unknown paths, server errors)."""

from django.views import defaults

from .exceptions import problem_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception=None):
    if _is_api(request):
        return problem_response(400, "Bad request.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return problem_response(403, "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)


def not_found(request, exception=None):
    if _is_api(request):
        return problem_response(404, "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return problem_response(500, "An internal error occurred.")
    return defaults.server_error(request)
