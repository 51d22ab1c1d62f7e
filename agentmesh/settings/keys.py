"""The secret key of an install that sets none: random, generated on first run, kept in a file."""

import base64
import hashlib
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# The key every embedded install used before keys were generated. It is public: nothing is signed
# with it any more; only secrets encrypted under its derived Fernet key can still be read.
LEGACY_DEV_SECRET_KEY = "django-insecure-agentmesh-dev-key-do-not-use-in-production"


def load_or_create_secret_key(path: Path) -> str:
    """The key stored in `path`; on first use a new random key, written there with mode 0600.

    Several processes (API, worker, beat) start at once: each writes its candidate to a file
    of its own and hard-links it to `path`, which only the first one can do, so all of them
    read the same complete key."""
    if not path.exists():
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_urlsafe(50).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            candidate.unlink()
    key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(f"{path} holds no usable secret key: delete it to generate a new one.")
    return key


def fernet_key_from(secret_key: str) -> str:
    """A Fernet key derived from `secret_key` (for installs that set no FERNET_KEYS)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()).decode()
