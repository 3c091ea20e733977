"""Google Gemini adapter (being written)."""

from __future__ import annotations

from providers.base import Provider, ProviderError, ProviderRequest, ProviderResult


class GeminiProvider(Provider):
    id = "gemini"
    label = "Google Gemini"
    operations = {}
    requires_api_key = True

    def run(self, request: ProviderRequest) -> ProviderResult:
        raise ProviderError("not implemented yet", code="not_configured")
