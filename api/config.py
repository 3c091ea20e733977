"""GET/PUT /api/settings (global settings) and POST /api/media/cache/purge.

Reading the settings needs `settings:read`, changing them `settings:write`; purging the media
cache needs `media:write`. The work is done by ingest.settings_service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.validators import RegexValidator
from django.urls import path
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.fields import Field
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, errors
from ingest import settings_service
from ingest.settings_service import SettingsChange
from jobqueue import deadlines


# --- request bodies ------------------------------------------------------------------------------
class ClosedSerializer(serializers.Serializer[Any]):
    """A request object that refuses fields it does not know (422 naming each of them)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class ClosedSerializerSchema(OpenApiSerializerExtension):
    """Documents closed request objects with `additionalProperties: false`."""

    target_class = ClosedSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(
            self.target, direction, bypass_extensions=True
        )
        schema["additionalProperties"] = False
        return schema


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: no strings, floats or booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictCharField(serializers.CharField):
    """A JSON string only: numbers and booleans are not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


# No control characters (Unicode category Cc): the same rule as the service's.
NO_CONTROL_CHARACTERS = RegexValidator(
    r"^[^\x00-\x1f\x7f-\x9f]*$", message="Must not contain control characters."
)


class DslrPasswordChange(ClosedSerializer):
    """A new ingest password (write-only)."""

    value = StrictCharField(
        min_length=settings_service.INGEST_PASSWORD_MIN_LENGTH,
        max_length=settings_service.INGEST_PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
        write_only=True,
        validators=[NO_CONTROL_CHARACTERS],
        help_text="The new ingest password the booth sends with each photo; in force for the "
        "next upload.",
    )


class IngestChange(ClosedSerializer):
    """Ingest settings to change."""

    sync_response_timeout_sec = StrictIntegerField(
        min_value=deadlines.SYNC_RESPONSE_MIN_SECONDS,
        max_value=deadlines.SYNC_RESPONSE_MAX_SECONDS,
        help_text="How long the booth waits for its answer; applies to photos received after.",
    )


class ProviderKeyChange(ClosedSerializer):
    """A provider's new API key (write-only), or an empty value to remove it."""

    api_key = StrictCharField(
        allow_blank=True,
        trim_whitespace=False,
        max_length=settings_service.API_KEY_MAX_LENGTH,
        write_only=True,
        validators=[NO_CONTROL_CHARACTERS],
        help_text="The provider's API key; an empty value removes the stored key (the key "
        "from the environment, if any, applies again).",
    )


class ProviderKeysChange(ClosedSerializer):
    """One optional entry per configured provider that needs an API key."""

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        return {
            provider_id: ProviderKeyChange(required=False)
            for provider_id in settings_service.key_providers()
        }


class SettingsUpdate(ClosedSerializer):
    """Any of the settings to change; leave out what stays as it is."""

    dslr_password = DslrPasswordChange(required=False)
    ingest = IngestChange(required=False)
    provider_keys = ProviderKeysChange(
        required=False, help_text="By provider id (only providers that need a key)."
    )


class MediaCachePurge(ClosedSerializer):
    """What to purge."""

    scope = serializers.ChoiceField(
        choices=list(settings_service.PURGE_SCOPES),
        default="full",
        help_text="media_objects: expired temporary media only; full (default): also results "
        "past their retention and orphaned files.",
    )


# --- response bodies -----------------------------------------------------------------------------
class DslrPasswordStatus(serializers.Serializer[Any]):
    is_set = serializers.BooleanField(help_text="Without a password every upload is refused.")
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_blank=True)


class ProviderKeyStatus(serializers.Serializer[Any]):
    is_configured = serializers.BooleanField()
    source = serializers.ChoiceField(
        choices=["settings", "environment", ""],
        help_text="settings: set through this API or the dashboard; environment: from the "
        "server's environment; empty: no key.",
    )
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_blank=True)


class IngestSettingsView(serializers.Serializer[Any]):
    sync_response_timeout_sec = serializers.IntegerField(min_value=1)
    sync_response_min_sec = serializers.IntegerField()
    sync_response_max_sec = serializers.IntegerField()
    result_retention_sec = serializers.IntegerField(min_value=1)
    max_upload_bytes = serializers.IntegerField(min_value=0)


class MediaCacheUsage(serializers.Serializer[Any]):
    results_bytes = serializers.IntegerField(min_value=0, help_text="Results still kept.")
    results_count = serializers.IntegerField(min_value=0)
    payloads_bytes = serializers.IntegerField(min_value=0, help_text="Uploaded photos kept.")
    media_bytes = serializers.IntegerField(min_value=0, help_text="Temporary public media.")
    media_count = serializers.IntegerField(min_value=0)
    templates_bytes = serializers.IntegerField(min_value=0)


class ProviderKeysStatus(serializers.Serializer[Any]):
    """One entry per configured provider that needs an API key."""

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        return {
            provider_id: ProviderKeyStatus() for provider_id in settings_service.key_providers()
        }


class SettingsView(serializers.Serializer[Any]):
    dslr_password = DslrPasswordStatus()
    provider_keys = ProviderKeysStatus(help_text="Every provider that needs an API key, by id.")
    ingest = IngestSettingsView()
    media_cache = MediaCacheUsage()


class PurgeScheduled(serializers.Serializer[Any]):
    """The purge was scheduled; it runs in the background."""

    scope = serializers.ChoiceField(choices=list(settings_service.PURGE_SCOPES))
    scheduled = serializers.BooleanField()


def _settings_body() -> dict[str, Any]:
    return dict(SettingsView(settings_service.settings_view()).data)


# --- views ---------------------------------------------------------------------------------------
class SettingsEndpoint(APIView):
    required_scopes = {"GET": "settings:read", "PUT": "settings:write"}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="settings_retrieve",
        responses={200: SettingsView, **AUTHENTICATED_ERRORS},
        tags=["settings"],
        description="The global settings. The ingest password and API keys are never returned: "
        "only whether they are set, by whom and when.",
    )
    def get(self, request: Request) -> Response:
        return _no_store(Response(_settings_body()))

    @extend_schema(
        operation_id="settings_update",
        request=SettingsUpdate,
        responses={200: SettingsView, **AUTHENTICATED_ERRORS, **errors(400, 415, 422)},
        tags=["settings"],
        description="Change any of the ingest password, the booth's answer timeout (45–60 s) "
        "and provider API keys. The whole request is checked first and applied at once: with "
        "any invalid or unknown field (422, details nested like the request) nothing changes. "
        "Answers with the settings as GET does.",
    )
    def put(self, request: Request) -> Response:
        body = SettingsUpdate(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        change = SettingsChange(
            dslr_password=data["dslr_password"]["value"] if "dslr_password" in data else None,
            sync_response_timeout_sec=(
                data["ingest"]["sync_response_timeout_sec"] if "ingest" in data else None
            ),
            provider_keys={
                provider_id: entry["api_key"]
                for provider_id, entry in data.get("provider_keys", {}).items()
            },
        )
        settings_service.apply_settings_change(
            change, actor=request.user.get_username(), request=request._request
        )
        return _no_store(Response(_settings_body()))


class MediaCachePurgeEndpoint(APIView):
    required_scopes = {"POST": "media:write"}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="media_cache_purge",
        request=MediaCachePurge,
        responses={202: PurgeScheduled, **AUTHENTICATED_ERRORS, **errors(400, 415, 422)},
        tags=["media"],
        description="Schedule the removal of expired temporary media (scope media_objects) or "
        "also of results past their retention and orphaned files (full, the default). Runs in "
        "the background: the answer comes at once.",
    )
    def post(self, request: Request) -> Response:
        body = MediaCachePurge(data=request.data)
        body.is_valid(raise_exception=True)
        scope = body.validated_data["scope"]
        settings_service.schedule_media_cache_purge(scope, actor=request.user.get_username())
        return Response({"scope": scope, "scheduled": True}, status=202)


def _no_store(response: Response) -> Response:
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("settings", SettingsEndpoint.as_view(), name="api-settings"),
    path("media/cache/purge", MediaCachePurgeEndpoint.as_view(), name="api-media-cache-purge"),
]
