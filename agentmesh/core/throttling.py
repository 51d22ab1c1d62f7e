from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ClientAddressThrottle(SimpleRateThrottle):
    """Throttle by client address whether or not the request is authenticated.

    The rate is read on every request (not at import) so it follows the settings in force.
    """

    scope = "auth"

    def get_rate(self):
        return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(self.scope)

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
