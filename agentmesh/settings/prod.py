"""Production: refuses to start without a real SECRET_KEY and FERNET_KEYS; HTTPS-only by default."""

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str
from .keys import LEGACY_DEV_SECRET_KEY

# Checked before base.py is read: production never falls back to a generated key file.
_secret_key = env_str("SECRET_KEY")
if not _secret_key or _secret_key == LEGACY_DEV_SECRET_KEY or len(_secret_key) < 32:
    raise ImproperlyConfigured("Set SECRET_KEY to a random value of at least 32 characters.")
if not env_list("FERNET_KEYS"):
    raise ImproperlyConfigured("Set FERNET_KEYS (comma-separated Fernet keys) to encrypt secrets.")

from .base import *  # noqa: E402, F403
from .base import REST_FRAMEWORK  # noqa: E402

DEBUG = False
# base.py read DEBUG from the environment: DEBUG=1 must not turn on the browsable API here.
REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] = [
    renderer for renderer in REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] if "Browsable" not in renderer
]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only. Switch the redirect off where a TLS-terminating proxy already redirects (the proxy
# must still set X-Forwarded-Proto), or to try the server over plain HTTP (then HSTS too).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Load balancers probe health over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/system/health$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Only admins create accounts unless self-registration is wanted.
REGISTRATION_OPEN = env_bool("REGISTRATION_OPEN", False)
