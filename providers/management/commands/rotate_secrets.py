"""`python manage.py rotate_secrets`: re-encrypt stored provider API keys with the newest key.

Rotation: put a new Fernet key first in SECRETS_ENCRYPTION_KEYS (keeping the old one after it),
restart, run this command, then drop the old key. All or nothing: if any stored key cannot be
decrypted, none is changed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers.secrets import SecretsUnreadable, rotate_encryption


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider API key with the first key in "
        "SECRETS_ENCRYPTION_KEYS, so that the older keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                count = rotate_encryption()
        except SecretsUnreadable as error:
            raise CommandError(
                f"Nothing was re-encrypted: {error}. Keep every key that encrypted a stored "
                "secret in SECRETS_ENCRYPTION_KEYS (or set that provider's key again)."
            ) from error
        self.stdout.write(
            f"Re-encrypted {count} stored provider key{'' if count == 1 else 's'} "
            "with the first SECRETS_ENCRYPTION_KEYS key."
        )
        if not any(key.strip() for key in settings.SECRETS_ENCRYPTION_KEYS):
            self.stdout.write(
                "Note: SECRETS_ENCRYPTION_KEYS is not set; the keys are encrypted with a key "
                "derived from SECRET_KEY, which is meant for development only."
            )
