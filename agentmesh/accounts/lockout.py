"""Login lockout (django-axes): how failures are counted and what a locked-out client sees."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.shortcuts import render
from rest_framework import status
from rest_framework.exceptions import APIException

from agentmesh.core.exceptions import problem_response

LOCKED_OUT_MESSAGE = "Too many failed login attempts: logins from this account or address are locked."


def lockout_username(request, credentials) -> str | None:
    """AXES_USERNAME_CALLABLE: count an account's failures under one name, whether the client
    typed its username or its email address."""
    raw = (credentials or {}).get("username")
    if raw is None:
        data = getattr(request, "data", None) or getattr(request, "POST", {})
        raw = data.get("username") if hasattr(data, "get") else None
    if not raw:
        return None
    raw = str(raw).strip()
    User = get_user_model()
    field = "email__iexact" if "@" in raw else "username"
    username = User._default_manager.filter(**{field: raw}).values_list("username", flat=True).first()
    return (username or raw.lower())[:255]


def retry_after_seconds(request) -> int | None:
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else None


class LoginLockedOut(APIException):
    """429 in the API error shape, with Retry-After (the cool-off; a further try restarts it)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self, request):
        self.wait = retry_after_seconds(request)  # DRF's handler turns it into Retry-After
        then = (
            f" Try again in {self.wait // 60 or 1} minute(s), or ask an administrator to unlock it."
            if self.wait
            else " Ask an administrator to unlock it."
        )
        super().__init__(LOCKED_OUT_MESSAGE + then, self.default_code)


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the error shape under /api/, a page of the admin elsewhere."""
    wait = retry_after_seconds(request)
    if request.path.startswith("/api/"):
        exc = LoginLockedOut(request)
        response = problem_response(
            429, str(exc.detail), [{"field": None, "code": "locked_out", "message": str(exc.detail)}]
        )
    else:
        context = {
            **admin.site.each_context(request),
            "title": "Login locked",
            "minutes": (wait // 60 or 1) if wait else None,
        }
        response = render(request, "accounts/lockout.html", context, status=429)
    if wait:
        response["Retry-After"] = str(wait)
    return response
