"""OpenAI image edits adapter (being written)."""

from __future__ import annotations

from providers.base import Provider, ProviderError, ProviderRequest, ProviderResult


class OpenAIProvider(Provider):
    id = "openai"
    label = "OpenAI image edits"
    operations = {}
    requires_api_key = True

    def run(self, request: ProviderRequest) -> ProviderResult:
        raise ProviderError("not implemented yet", code="not_configured")
