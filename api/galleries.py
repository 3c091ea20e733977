"""GET/POST /api/galleries, GET/DELETE /api/galleries/<id>: public galleries of an event.

Reading needs `slots:read`; creating and revoking need `slots:write`. The rules (title, known
slots, an ordered range, a lifetime of 1 hour to 7 days) and the audit live in
galleries.services, which the dashboard's galleries page uses too.
"""

from __future__ import annotations

from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, errors
from galleries import services
from galleries.models import Gallery, GalleryState


# --- request and answer bodies -------------------------------------------------------------------
class JsonStringField(serializers.CharField):
    """A JSON string only: numbers are not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class JsonIntegerField(serializers.IntegerField):
    """A JSON whole number only: strings, booleans and fractions are refused."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class GalleryCreate(serializers.Serializer[Any]):
    # Blank titles reach the service, whose message is the dashboard's too.
    title = JsonStringField(
        max_length=services.TITLE_MAX_LENGTH,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Shown to the guests at the top of the page.",
    )
    slot_ids = serializers.ListField(
        child=JsonStringField(),
        allow_empty=True,
        max_length=100,
        help_text="The slots whose results are shown; an empty list means every slot.",
    )
    results_since = serializers.DateTimeField(
        help_text="Photos received from this time on (ISO 8601; without an offset, the "
        "server's TIME_ZONE)."
    )
    results_until = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="…and before this time; null or left out: open, new photos keep appearing.",
    )
    lifetime_hours = JsonIntegerField(
        min_value=services.MIN_LIFETIME_HOURS,
        max_value=services.MAX_LIFETIME_HOURS,
        help_text="How long the public link works, from now: 1 hour to "
        f"{services.GALLERY_MAX_LIFETIME.days} days.",
    )


class GallerySerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField(help_text="Random (UUID4): the public address's only key.")
    title = serializers.CharField()
    slot_ids = serializers.ListField(child=serializers.CharField(), help_text="Empty: every slot.")
    results_since = serializers.DateTimeField()
    results_until = serializers.DateTimeField(allow_null=True, help_text="null: open.")
    expires_at = serializers.DateTimeField(help_text="The public link answers 410 from then.")
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    state = serializers.ChoiceField(
        choices=GalleryState.choices, help_text="active, expired or revoked."
    )
    public_url = serializers.URLField(
        help_text="The guests' page, from PUBLIC_BASE_URL: 200 while active, then 410."
    )


class GalleryListSerializer(serializers.Serializer[Any]):
    results = GallerySerializer(many=True, help_text="Newest first.")
    count = serializers.IntegerField(min_value=0)


def _body(gallery: Gallery) -> dict[str, Any]:
    return dict(
        GallerySerializer(
            {
                "id": gallery.id,
                "title": gallery.title,
                "slot_ids": gallery.slot_ids,
                "results_since": gallery.results_since,
                "results_until": gallery.results_until,
                "expires_at": gallery.expires_at,
                "created_by": gallery.created_by,
                "created_at": gallery.created_at,
                "revoked_at": gallery.revoked_at,
                "state": gallery.state(timezone.now()).value,
                "public_url": services.gallery_public_url(gallery.id),
            }
        ).data
    )


GALLERY_ID = OpenApiParameter(
    "gallery_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A gallery's id."
)


# --- views ---------------------------------------------------------------------------------------
class GalleryListView(APIView):
    required_scopes = {"GET": "slots:read", "POST": "slots:write"}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="galleries_list",
        responses={200: GalleryListSerializer, **AUTHENTICATED_ERRORS},
        tags=["galleries"],
        description="Every gallery, newest first, in any state.",
    )
    def get(self, request: Request) -> Response:
        galleries = services.list_galleries()
        return Response(
            {"results": [_body(gallery) for gallery in galleries], "count": len(galleries)}
        )

    @extend_schema(
        operation_id="galleries_create",
        request=GalleryCreate,
        responses={201: GallerySerializer, **AUTHENTICATED_ERRORS, **errors(422)},
        tags=["galleries"],
        description="Share the results of some slots (or all) over a time range with the "
        "guests, at a public address that works from now for lifetime_hours (1 to "
        f"{services.MAX_LIFETIME_HOURS}). The page shows successful results still within "
        "their retention, newest first; dashboard test runs are never shown. A field that "
        "fails is a 422 `validation_failed` with messages per field (unknown slots, an "
        "empty title, results_until not after results_since, a lifetime out of range).",
    )
    def post(self, request: Request) -> Response:
        body = GalleryCreate(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        gallery = services.create_gallery(
            title=values["title"],
            slot_ids=values["slot_ids"],
            results_since=values["results_since"],
            results_until=values.get("results_until"),
            lifetime_hours=values["lifetime_hours"],
            actor=request.user.get_username(),
            request=request._request,
        )
        return Response(_body(gallery), status=201)


class GalleryDetailView(APIView):
    required_scopes = {"GET": "slots:read", "DELETE": "slots:write"}

    @extend_schema(
        operation_id="galleries_retrieve",
        parameters=[GALLERY_ID],
        responses={200: GallerySerializer, **AUTHENTICATED_ERRORS, **errors(404)},
        tags=["galleries"],
    )
    def get(self, request: Request, gallery_id: str) -> Response:
        return Response(_body(services.get_gallery(gallery_id)))

    @extend_schema(
        operation_id="galleries_revoke",
        parameters=[GALLERY_ID],
        responses={
            204: OpenApiResponse(description="Revoked (or revoked before)."),
            **AUTHENTICATED_ERRORS,
            **errors(404),
        },
        tags=["galleries"],
        description="Revoke the gallery: its public address answers 410 from now on. "
        "Idempotent: revoking a revoked gallery changes nothing and answers 204 again.",
    )
    def delete(self, request: Request, gallery_id: str) -> Response:
        services.revoke_gallery(
            gallery_id=gallery_id, actor=request.user.get_username(), request=request._request
        )
        return Response(status=204)


urlpatterns = [
    path("galleries", GalleryListView.as_view(), name="api-galleries"),
    path("galleries/<str:gallery_id>", GalleryDetailView.as_view(), name="api-gallery"),
]
