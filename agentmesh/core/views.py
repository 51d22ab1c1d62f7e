"""JSON error pages for URLs outside DRF views (unknown paths, server errors)."""

import sys
from http import HTTPStatus

from django.urls import Resolver404, resolve
from django.views import defaults

from .exceptions import problem_response, unavailable_dependency, unavailable_response


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
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request):
    exc = sys.exc_info()[1]  # Django calls the handler while handling the exception
    if unavailable_dependency(exc):
        return unavailable_response(exc, api=_is_api(request))
    if _is_api(request):
        return problem_response(500, "An internal error occurred.")
    return defaults.server_error(request)


def api_not_found(request):
    """404 for an API path; one that only differs by a trailing slash names the right path."""
    path = request.path
    if path.endswith("/") and path != "/api/":
        try:
            resolve(path.rstrip("/"), getattr(request, "urlconf", None))
        except Resolver404:
            pass
        else:
            right = path.rstrip("/")
            message = f"API paths have no trailing slash: use {right}"
            return problem_response(
                404, f"Not found. {message}.", [{"field": None, "code": "trailing_slash", "message": message}]
            )
    return problem_response(
        404, "Not found.", [{"field": None, "code": "not_found", "message": "Not found."}]
    )


_API_ERROR_VIEWS = {400: bad_request, 403: permission_denied, 404: not_found}


def api_error_response(request, status_code: int):
    """The JSON error for `status_code` on an API path (used where Django answered otherwise)."""
    if status_code in _API_ERROR_VIEWS:
        return _API_ERROR_VIEWS[status_code](request)
    if status_code >= 500:
        return problem_response(status_code, "An internal error occurred.")
    try:
        return problem_response(status_code, HTTPStatus(status_code).phrase + ".")
    except ValueError:
        return problem_response(status_code, "The request failed.")
