"""The providers this installation offers, built from settings.PHOTOBOOTH_PROVIDERS."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from providers.base import Provider, SettingsInvalid


@cache
def _providers_by_id(paths: tuple[str, ...]) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for path in paths:
        provider = import_string(path)()
        providers[provider.id] = provider
    return providers


def all_providers() -> dict[str, Provider]:
    """Every configured provider by id."""
    return _providers_by_id(tuple(settings.PHOTOBOOTH_PROVIDERS))


def get_provider(provider_id: str) -> Provider:
    """The provider with this id, or SettingsInvalid naming the field."""
    try:
        return all_providers()[provider_id]
    except KeyError:
        raise SettingsInvalid({"provider_id": [f"unknown provider {provider_id!r}"]}) from None
