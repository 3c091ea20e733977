"""Provider API keys, encrypted at rest (see providers.secrets)."""

from __future__ import annotations

from django.db import models


class ProviderKey(models.Model):
    """The API key an operator set for a provider through the settings API or dashboard."""

    provider_id = models.CharField(primary_key=True, max_length=64)
    # Fernet token of the key: never the key itself.
    encrypted_key = models.TextField()
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["provider_id"]

    def __str__(self) -> str:
        return f"API key for {self.provider_id}"
