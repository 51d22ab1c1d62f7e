"""Symmetric encryption of stored secrets with a rotating key list.

Keys come from `settings.FERNET_KEYS` (a list of urlsafe-base64 Fernet keys): the first one
encrypts, all of them decrypt, so a new key is put first, every row is re-encrypted with
`rotate()`, and only then is the old key removed.
"""

import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The ciphertext does not decrypt under any configured key (or is corrupt)."""


@lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FERNET_KEYS is empty: at least one key is required.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured("FERNET_KEYS holds an invalid Fernet key.") from exc


def _keys() -> MultiFernet:
    # Read the setting on every call (cached per key list) so a changed key list applies at once.
    return _multi_fernet(tuple(settings.FERNET_KEYS))


def encrypt(plaintext: str) -> str:
    return _keys().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("The value cannot be decrypted with the configured keys.") from exc


def rotate(token: str) -> str:
    """Re-encrypt `token` under the first key (it may have been written under any key)."""
    try:
        return _keys().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("The value cannot be decrypted with the configured keys.") from exc


def fingerprint(plaintext: str) -> str:
    """A short, stable identifier of a value: tells two values apart without revealing them."""
    return "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()[:16]


def mask(plaintext: str) -> str:
    """A display form such as `sk-…abcd`; short values are fully hidden."""
    if len(plaintext) < 12:
        return "…" + "*" * 4
    return f"{plaintext[:3]}…{plaintext[-4:]}"
