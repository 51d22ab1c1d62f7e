import ipaddress

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from .features import runtime_setting


def client_address(request) -> str:
    """The client's IP address, for throttles, the login lockout and anything else that needs it.

    REMOTE_ADDR, unless TRUSTED_PROXY_COUNT reverse proxies stand in front of the app: then the
    address the outermost trusted proxy saw, which is that many entries from the right of
    X-Forwarded-For (entries further left are the client's to write, so never trusted).
    """
    meta = request.META
    remote = meta.get("REMOTE_ADDR", "")
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if proxies <= 0 or not forwarded:
        return remote
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    if not entries:
        return remote
    try:
        return str(ipaddress.ip_address(entries[-min(proxies, len(entries))]))
    except ValueError:
        return remote


class ClientAddressThrottle(SimpleRateThrottle):
    """Throttle by client address whether or not the request is authenticated.

    The rate is read on every request (not at import) so it follows the settings in force.
    """

    scope = "auth"

    def get_rate(self):
        if self.scope == "auth":  # runtime setting AUTH_THROTTLE_RATE (GET/PUT /system/config)
            return runtime_setting("AUTH_THROTTLE_RATE")
        return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope)

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserThrottle(UserRateThrottle):
    """DRF's per-user throttle; anonymous requests are counted by client_address(). The rate is
    the runtime setting USER_THROTTLE_RATE, read on every request."""

    def get_rate(self):
        return runtime_setting("USER_THROTTLE_RATE")

    def get_ident(self, request):
        return client_address(request)
