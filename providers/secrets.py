"""Provider API keys: encrypted at rest, write-only, with the environment as the fallback.

Keys set through the settings API are stored as Fernet tokens (AES-128-CBC + HMAC-SHA256) under
the keys in settings.SECRETS_ENCRYPTION_KEYS; the first of those encrypts, every one decrypts,
so the encryption key can be rotated without losing stored secrets. Plain keys never leave this
module except to the adapter making the call.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils import timezone

from providers.models import ProviderKey


class SecretsUnreadable(Exception):
    """A stored key cannot be decrypted with any configured encryption key."""


def _fernet() -> MultiFernet:
    keys = [key.strip() for key in settings.SECRETS_ENCRYPTION_KEYS if key.strip()]
    if not keys:
        # Development fallback: a key derived from SECRET_KEY (documented as unfit for production).
        digest = hashlib.sha256(b"photobooth-secrets:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key.encode()) for key in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretsUnreadable(
            "a stored provider key cannot be decrypted: check SECRETS_ENCRYPTION_KEYS"
        ) from None


def set_api_key(provider_id: str, api_key: str, *, changed_by: str = "") -> None:
    """Store (or, with an empty value, remove) the API key for a provider."""
    api_key = api_key.strip()
    if not api_key:
        ProviderKey.objects.filter(provider_id=provider_id).delete()
        return
    ProviderKey.objects.update_or_create(
        provider_id=provider_id,
        defaults={
            "encrypted_key": encrypt(api_key),
            "updated_at": timezone.now(),
            "updated_by": changed_by,
        },
    )


def api_key_for(provider_id: str) -> str:
    """The key to call a provider with: the stored one, else the environment's, else ""."""
    stored = ProviderKey.objects.filter(provider_id=provider_id).first()
    if stored is not None:
        return decrypt(stored.encrypted_key)
    return str(settings.PROVIDER_API_KEYS.get(provider_id, ""))


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about a key: whether it is set, where from, who changed it and when."""

    is_configured: bool
    source: str  # "settings", "environment" or ""
    updated_at: datetime | None
    updated_by: str


def key_status(provider_id: str) -> KeyStatus:
    stored = ProviderKey.objects.filter(provider_id=provider_id).first()
    if stored is not None:
        return KeyStatus(True, "settings", stored.updated_at, stored.updated_by)
    if settings.PROVIDER_API_KEYS.get(provider_id):
        return KeyStatus(True, "environment", None, "")
    return KeyStatus(False, "", None, "")


def rotate_encryption() -> int:
    """Re-encrypt every stored key with the first encryption key; returns how many."""
    fernet = _fernet()
    count = 0
    for stored in ProviderKey.objects.all():
        try:
            stored.encrypted_key = fernet.rotate(stored.encrypted_key.encode()).decode()
        except InvalidToken:
            raise SecretsUnreadable(
                f"the key for {stored.provider_id} cannot be decrypted with any configured key"
            ) from None
        stored.save(update_fields=["encrypted_key"])
        count += 1
    return count
