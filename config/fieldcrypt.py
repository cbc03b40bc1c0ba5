"""Encryption at rest for sensitive fields (label rationales, sealed texts): Fernet under a
key list, and the keyed hashes that stand in for a sealed text's content hash.

``settings.TANDEM_FIELD_KEYS`` (from the environment variable of the same name, a
comma-separated list of Fernet keys) is read as a ``MultiFernet``: the first key encrypts,
every key decrypts. Rotation is therefore: put a new key first, keep the old ones after it,
run ``manage.py rotate_field_keys`` (every stored value read and written again, so under the
first key), then drop the old keys. See docs/security.md.

A stored value is ``enc1:`` followed by the Fernet token, so a value written before
encryption existed (plain text) is still read as itself, and ``rotate_field_keys`` encrypts it.
Every write encrypts, whatever the text looks like (a rationale typed as ``enc1:...`` is
encrypted like any other, so reading it back never fails).
The database, its backups and its dumps then hold no rationale in clear; whoever holds a key
(the application) reads them as before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import warnings

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "enc1:"


class FieldKeyError(ValueError):
    """A stored value no configured key can decrypt (a key was dropped before rotating)."""


def dev_key_from_secret(secret_key: str) -> str:
    """The DEBUG-only demo key: derived from SECRET_KEY, so a laptop needs no setup."""
    digest = hashlib.sha256(("tandem-field-key:" + secret_key).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def field_keys_from_environment(*, secret_key: str, production: bool) -> list[str]:
    """The key list settings use: ``TANDEM_FIELD_KEYS``, or (never with
    ``TANDEM_ENV=production``) a key derived from SECRET_KEY, with a warning. Each key is
    checked here, at start-up.

    The demo key is refused by production settings, not by DEBUG being off: test workers and
    benches run with DEBUG off outside production and need no key set up."""
    raw = os.environ.get("TANDEM_FIELD_KEYS", "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        if production:
            raise ImproperlyConfigured(
                "TANDEM_FIELD_KEYS must list at least one Fernet key in production "
                "(python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            )
        warnings.warn(
            "TANDEM_FIELD_KEYS is not set: sensitive fields are encrypted with a key derived "
            "from SECRET_KEY (a demo default; production requires TANDEM_FIELD_KEYS).",
            stacklevel=2,
        )
        return [dev_key_from_secret(secret_key)]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"TANDEM_FIELD_KEYS: key {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return keys


_cache: dict[tuple[str, ...], MultiFernet] = {}


def _fernet() -> MultiFernet:
    keys = tuple(settings.TANDEM_FIELD_KEYS)
    if not keys:
        raise ImproperlyConfigured("TANDEM_FIELD_KEYS is empty")
    if keys not in _cache:
        _cache.clear()
        _cache[keys] = MultiFernet([Fernet(k) for k in keys])
    return _cache[keys]


def _hmac_keys() -> list[bytes]:
    """One HMAC key per field key (same order), derived so that neither reveals the other:
    a sealed text's content hash is keyed, so a guess of the text cannot be confirmed by
    hashing it, and nobody holding only the database can compute one."""
    return [
        hashlib.sha256(b"tandem-sealed-hash:" + key.encode("ascii")).digest()
        for key in settings.TANDEM_FIELD_KEYS
    ]


def keyed_hash(value: str) -> str:
    """HMAC-SHA256 of ``value`` under the first field key's HMAC key (64 hex characters, the
    width of the sha256 content hashes it replaces)."""
    return hmac.new(_hmac_keys()[0], value.encode("utf-8"), hashlib.sha256).hexdigest()


def keyed_hashes(value: str) -> list[str]:
    """``value``'s keyed hash under every configured key: what a lookup compares against while
    a rotation is under way (rows not yet re-keyed still carry an older key's hash)."""
    return [hmac.new(k, value.encode("utf-8"), hashlib.sha256).hexdigest() for k in _hmac_keys()]


def is_encrypted(stored) -> bool:
    return isinstance(stored, str) and stored.startswith(PREFIX)


def encrypt_text(plain: str) -> str:
    """``plain`` encrypted under the first key; the empty string stays empty (nothing to hide,
    and "no rationale" stays cheap to find)."""
    if not plain:
        return plain
    return PREFIX + _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt_text(stored):
    """What ``encrypt_text`` stored, in clear; a value without the prefix is returned as it is
    (written before encryption)."""
    if not is_encrypted(stored):
        return stored
    try:
        return _fernet().decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise FieldKeyError(
            "a stored value cannot be decrypted with any key in TANDEM_FIELD_KEYS"
        ) from None


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python code sees the clear text."""

    def from_db_value(self, value, expression, connection):
        return decrypt_text(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None else encrypt_text(value)


class EncryptedKeysJSONField(models.JSONField):
    """A JSON object whose top-level text values under ``encrypted_keys`` are stored encrypted.

    The rest of the object stays plain JSON, so queries on it (``payload__outcome``) and the
    snapshot readers work unchanged; the listed keys (a label's free-text ``rationale``) are
    ``enc1:`` tokens in the database and clear text in Python.
    """

    def __init__(self, *args, encrypted_keys: tuple[str, ...] = (), **kwargs):
        self.encrypted_keys = tuple(encrypted_keys)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs["encrypted_keys"] = self.encrypted_keys
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        value = super().from_db_value(value, expression, connection)
        if isinstance(value, dict):
            hidden = [k for k in self.encrypted_keys if is_encrypted(value.get(k))]
            if hidden:
                value = {**value, **{k: decrypt_text(value[k]) for k in hidden}}
        return value

    def get_prep_value(self, value):
        return super().get_prep_value(self.encrypted_copy(value))

    def encrypted_copy(self, value):
        if not isinstance(value, dict):
            return value
        texts = [k for k in self.encrypted_keys if isinstance(value.get(k), str) and value[k]]
        if not texts:
            return value
        return {**value, **{k: encrypt_text(value[k]) for k in texts}}
