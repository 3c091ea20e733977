"""GET /api/providers: every provider, its operations and each operation's settings schema."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS
from providers.registry import all_providers
from providers.secrets import key_status

SETTING = inline_serializer(
    name="SettingField",
    fields={
        "name": serializers.CharField(),
        "kind": serializers.ChoiceField(
            choices=["string", "text", "choice", "integer", "number", "boolean", "template"]
        ),
        "label": serializers.CharField(),
        "required": serializers.BooleanField(),
        "default": serializers.JSONField(allow_null=True),
        "choices": serializers.ListField(child=serializers.CharField()),
        "minimum": serializers.FloatField(allow_null=True),
        "maximum": serializers.FloatField(allow_null=True),
        "help_text": serializers.CharField(allow_blank=True),
    },
)

PROVIDER = inline_serializer(
    name="Provider",
    fields={
        "id": serializers.CharField(),
        "label": serializers.CharField(),
        "requires_api_key": serializers.BooleanField(),
        "is_configured": serializers.BooleanField(),
        "accepted_mimes": serializers.ListField(child=serializers.CharField()),
        "operations": serializers.ListField(
            child=inline_serializer(
                name="ProviderOperation",
                fields={
                    "id": serializers.CharField(),
                    "label": serializers.CharField(),
                    "settings": serializers.ListField(child=SETTING),
                },
            )
        ),
    },
)


class ProvidersView(APIView):
    required_scopes = {"GET": "slots:read"}

    @extend_schema(
        operation_id="providers_list",
        responses={
            200: inline_serializer(
                name="ProviderList", fields={"providers": serializers.ListField(child=PROVIDER)}
            ),
            **AUTHENTICATED_ERRORS,
        },
        tags=["providers"],
    )
    def get(self, request: Request) -> Response:
        providers: list[dict[str, Any]] = []
        for provider in all_providers().values():
            description = provider.describe()
            description["is_configured"] = (
                not provider.requires_api_key or key_status(provider.id).is_configured
            )
            providers.append(description)
        return Response({"providers": providers})
