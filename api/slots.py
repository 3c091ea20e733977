"""GET /api/slots, GET/PUT /api/slots/<id> and POST /api/slots/<id>/reset_stats.

Reading needs `slots:read`, changing `slots:write`. An edit must name the version it was made
on (the ETag from GET, sent as If-Match, or `updated_at` in the body): an edit made on an older
version is refused with 409, so concurrent editors never overwrite each other unknowingly. The
queries and the version-checked save live in ingest.selectors.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, ERROR_BODY, errors, valid_query
from ingest import selectors
from ingest.models import SLOT_FLAGS
from ingest.selectors import SlotFilters
from photobooth.errors import Unprocessable
from providers.base import SettingsInvalid


# --- query and request bodies --------------------------------------------------------------------
class SlotListQuery(serializers.Serializer[Any]):
    """The query parameters of GET /api/slots."""

    provider = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="Only slots using this provider id.",
    )
    operation = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="Only slots running this operation id.",
    )
    is_active = serializers.BooleanField(
        required=False, help_text="true: only active slots; false: only inactive ones."
    )
    search = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Only slots whose id or name contains this text (case-insensitive).",
    )

    def validate_provider(self, value: str) -> str:
        known = selectors.known_provider_ids()
        if value and value not in known:
            raise serializers.ValidationError(
                f"Unknown provider '{value}'. Known providers: {', '.join(known)}."
            )
        return value

    def validate_operation(self, value: str) -> str:
        known = selectors.known_operation_ids()
        if value and value not in known:
            raise serializers.ValidationError(
                f"Unknown operation '{value}'. Known operations: {', '.join(known)}."
            )
        return value


class JsonBooleanField(serializers.BooleanField):
    """A JSON true/false only: strings and numbers are not read as booleans."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class JsonStringField(serializers.CharField):
    """A JSON string only: numbers are not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


def _unstorable_text(value: Any) -> bool:
    """Whether a JSON value holds text the database cannot store (NUL, lone surrogates)."""
    if isinstance(value, str):
        return "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_unstorable_text(key) or _unstorable_text(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_unstorable_text(item) for item in value)
    return False


class SlotUpdate(serializers.Serializer[Any]):
    """A slot's new configuration. Other fields (id, created_at, …) are ignored, so what GET
    returned can be sent back with changes."""

    name = JsonStringField(
        max_length=100, required=False, help_text="Display name; unchanged when left out."
    )
    provider_id = JsonStringField(max_length=64)
    operation_id = JsonStringField(max_length=64)
    settings_json = serializers.DictField(
        help_text="The operation's settings (see GET /api/providers); missing ones take their "
        "defaults."
    )
    is_active = JsonBooleanField(help_text="Whether the booth may send photos to this slot.")
    qr_stamp = JsonBooleanField(
        required=False,
        help_text="Stamp a QR code of the guest's result page onto each result; unchanged "
        "when left out.",
    )
    one_at_a_time = JsonBooleanField(
        required=False,
        help_text="Refuse a photo (429, code slot_busy) while one of this slot's jobs is "
        "unfinished; unchanged when left out.",
    )
    updated_at = serializers.DateTimeField(
        required=False,
        help_text="The slot's updated_at as read: an alternative to the If-Match header.",
    )

    def validate_settings_json(self, value: dict[str, Any]) -> dict[str, Any]:
        if _unstorable_text(value):
            raise serializers.ValidationError(
                "Must not contain NUL characters or unpaired surrogates."
            )
        return value


# --- answers -------------------------------------------------------------------------------------
class SlotSerializer(serializers.Serializer[Any]):
    id = serializers.CharField()
    name = serializers.CharField()
    provider_id = serializers.CharField()
    operation_id = serializers.CharField()
    settings_json = serializers.DictField(help_text="The operation's settings.")
    is_active = serializers.BooleanField()
    qr_stamp = serializers.BooleanField(help_text="Results carry a QR code of their guest page.")
    one_at_a_time = serializers.BooleanField(
        help_text="One photo at a time: 429 (slot_busy) while a job of this slot is unfinished."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="The slot's version (see the ETag).")
    last_reset_at = serializers.DateTimeField(
        allow_null=True, help_text="When its statistics were last reset; null if never."
    )


class SlotListSerializer(serializers.Serializer[Any]):
    results = SlotSerializer(many=True, help_text="Ordered by id.")
    count = serializers.IntegerField(min_value=0)


class RecentResultSerializer(serializers.Serializer[Any]):
    job_id = serializers.UUIDField()
    thumbnail_url = serializers.URLField(help_text="Public JPEG preview, ≤ 320 px.")
    download_url = serializers.URLField(help_text="Public download link (410 once expired).")
    completed_at = serializers.DateTimeField()
    result_expires_at = serializers.DateTimeField()
    mime = serializers.CharField()
    size = serializers.IntegerField(min_value=0, help_text="Bytes.")


class SlotDetailSerializer(SlotSerializer):
    recent_results = RecentResultSerializer(
        many=True,
        help_text=f"Up to {selectors.RECENT_RESULTS_LIMIT} latest successful results that have "
        "not expired, newest first.",
    )


SLOT_ID = OpenApiParameter("slot_id", OpenApiTypes.STR, OpenApiParameter.PATH)
ETAG_HEADER = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The slot's current version; send it back as If-Match to change the slot.",
    response=[200],
)
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="The ETag from GET /api/slots/<id>. Required unless the body has updated_at.",
)


def _with_etag(response: Response, etag: str) -> Response:
    response["ETag"] = etag
    return response


# --- views ---------------------------------------------------------------------------------------
class SlotListView(APIView):
    required_scopes = {"GET": "slots:read"}

    @extend_schema(
        operation_id="slots_list",
        parameters=[SlotListQuery],
        responses={200: SlotListSerializer, **AUTHENTICATED_ERRORS, **errors(400)},
        tags=["slots"],
        description="Every slot (there are 15), ordered by id, narrowed by the filters given. "
        "An unknown provider or operation, or an is_active other than true/false, is a 400 "
        "`invalid_parameter` naming the parameter.",
    )
    def get(self, request: Request) -> Response:
        # A plain dict: with a QueryDict, a missing boolean would read as false.
        params = valid_query(SlotListQuery(data=request.query_params.dict()))
        slots = list(
            selectors.slot_list(
                SlotFilters(
                    # An empty text filter (a cleared search box) means "any".
                    provider_id=params.get("provider") or None,
                    operation_id=params.get("operation") or None,
                    is_active=params.get("is_active"),
                    search=params.get("search") or None,
                )
            )
        )
        return Response(SlotListSerializer({"results": slots, "count": len(slots)}).data)


class SlotDetailView(APIView):
    required_scopes = {"GET": "slots:read", "PUT": "slots:write"}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="slots_retrieve",
        parameters=[SLOT_ID, ETAG_HEADER],
        responses={200: SlotDetailSerializer, **AUTHENTICATED_ERRORS, **errors(404)},
        tags=["slots"],
        description="One slot with its latest results. The ETag header is its version, "
        "needed to change it.",
    )
    def get(self, request: Request, slot_id: str) -> Response:
        slot = selectors.get_slot(slot_id)
        body = dict(SlotSerializer(slot).data)
        body["recent_results"] = RecentResultSerializer(
            selectors.recent_results(slot.id), many=True
        ).data
        return _with_etag(Response(body), selectors.slot_etag(slot))

    @extend_schema(
        operation_id="slots_update",
        parameters=[SLOT_ID, IF_MATCH_HEADER, ETAG_HEADER],
        request=SlotUpdate,
        responses={
            200: SlotSerializer,
            **AUTHENTICATED_ERRORS,
            400: OpenApiResponse(
                response=ERROR_BODY,
                description="Malformed JSON, or an If-Match that holds no quoted ETag",
            ),
            **errors(404, 409, 415, 422, 428),
        },
        tags=["slots"],
        description="Replace the slot's provider, operation, settings and active flag (and "
        "optionally its name). Send the ETag you read as If-Match, or the updated_at you read "
        "in the body: without either the answer is 428, and if the slot changed since, 409 "
        "`version_conflict` with the current ETag. Settings are checked against the "
        "operation: 422 `validation_failed` with the messages per field (a setting's name, or "
        "provider_id / operation_id). Jobs already queued keep their old configuration.",
    )
    def put(self, request: Request, slot_id: str) -> Response:
        body = SlotUpdate(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        try:
            slot = selectors.update_slot_if_current(
                slot_id=slot_id,
                if_match=request.headers.get("If-Match"),
                updated_at=values.get("updated_at"),
                provider_id=values["provider_id"],
                operation_id=values["operation_id"],
                settings=values["settings_json"],
                is_active=values["is_active"],
                name=values.get("name"),
                flags={flag: values[flag] for flag in SLOT_FLAGS if flag in values},
                actor=request.user.get_username(),
                request=request._request,
            )
        except SettingsInvalid as invalid:
            raise Unprocessable(
                "The slot's configuration is invalid.", details=invalid.errors
            ) from invalid
        return _with_etag(Response(SlotSerializer(slot).data), selectors.slot_etag(slot))


class SlotResetStatsView(APIView):
    required_scopes = {"POST": "slots:write"}

    @extend_schema(
        operation_id="slots_reset_stats",
        parameters=[SLOT_ID],
        request=None,
        responses={
            204: OpenApiResponse(description="Statistics reset"),
            **AUTHENTICATED_ERRORS,
            **errors(404),
        },
        tags=["slots"],
        description="Count the slot's statistics from now on (sets last_reset_at). Jobs and "
        "their history are kept; the slot's ETag does not change.",
    )
    def post(self, request: Request, slot_id: str) -> Response:
        selectors.reset_slot_stats(
            slot_id=slot_id, actor=request.user.get_username(), request=request._request
        )
        return Response(status=204)


urlpatterns = [
    path("slots", SlotListView.as_view(), name="api-slots"),
    path("slots/<str:slot_id>", SlotDetailView.as_view(), name="api-slot"),
    path("slots/<str:slot_id>/reset_stats", SlotResetStatsView.as_view(), name="api-slot-reset"),
]
