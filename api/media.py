"""Template images (upload, bind, list, preview, unbind, delete) and temporary public media.

POST /api/template-media/register and DELETE /api/template-media/<id> need `media:write`;
reading templates needs `slots:read`; POST /api/media/register needs `media:write`. The rules
(type from the bytes, size limit, in-use refusal, force) live in ingest.media_service.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import FileResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.schema import AUTHENTICATED_ERRORS, errors
from ingest import media_service
from ingest.media_service import BindingTarget, Upload
from jobqueue import files
from photobooth.errors import BadRequest, PayloadTooLarge

IMAGE_MIMES = list(media_service.ACCEPTED_MIMES)
TEMPLATE_ID = OpenApiParameter(
    "template_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A template's id."
)


# --- serializers ---------------------------------------------------------------------------------
class TemplateBindingSerializer(serializers.Serializer[Any]):
    slot_id = serializers.CharField()
    setting_key = serializers.CharField()


class TemplateMediaSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    mime = serializers.CharField(help_text="image/jpeg, image/png or image/webp.")
    size = serializers.IntegerField(min_value=0, help_text="Bytes.")
    width = serializers.IntegerField(min_value=0)
    height = serializers.IntegerField(min_value=0)
    sha256 = serializers.CharField()
    original_name = serializers.CharField(allow_blank=True, help_text="As uploaded.")
    created_at = serializers.DateTimeField()
    bindings = TemplateBindingSerializer(many=True, help_text="Slot settings using this template.")


class TemplateMediaPageSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(min_value=0, help_text="Templates on all pages.")
    page = serializers.IntegerField(min_value=1)
    page_size = serializers.IntegerField(min_value=1, max_value=media_service.MAX_PAGE_SIZE)
    results = TemplateMediaSerializer(many=True)


class TemplateListQuery(serializers.Serializer[Any]):
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    page_size = serializers.IntegerField(
        min_value=1, max_value=media_service.MAX_PAGE_SIZE, default=media_service.DEFAULT_PAGE_SIZE
    )


class TemplateUpload(serializers.Serializer[Any]):
    file = serializers.FileField(help_text="A JPEG, PNG or WebP image.")
    slot_id = serializers.CharField(
        max_length=32, required=False, help_text="Bind to this slot at once (with setting_key)."
    )
    setting_key = serializers.CharField(
        max_length=64,
        required=False,
        help_text="A template setting of the slot's operation, e.g. frame_media_id.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _both_or_neither(attrs)
        return attrs


class TemplateDeleteQuery(serializers.Serializer[Any]):
    slot_id = serializers.CharField(
        max_length=32, required=False, help_text="Only unbind from this slot (with setting_key)."
    )
    setting_key = serializers.CharField(max_length=64, required=False)
    force = serializers.BooleanField(
        default=False,
        help_text="Also when a slot needs the template: the setting is removed and a slot that "
        "requires it is switched off.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        _both_or_neither(attrs)
        return attrs


def _both_or_neither(attrs: dict[str, Any]) -> None:
    has_slot, has_key = bool(attrs.get("slot_id")), bool(attrs.get("setting_key"))
    if has_slot != has_key:
        missing = "setting_key" if has_slot else "slot_id"
        raise serializers.ValidationError({missing: ["Give slot_id and setting_key together."]})


class TemporaryMediaUpload(serializers.Serializer[Any]):
    file = serializers.FileField(help_text="A JPEG, PNG or WebP image.")
    ttl_seconds = serializers.IntegerField(
        min_value=1,
        max_value=media_service.MAX_TTL_SECONDS,
        required=False,
        help_text="How long the public link answers (default: one hour).",
    )


class TemporaryMediaSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    public_url = serializers.URLField(help_text="Answers 200 until expires_at, then 410.")
    expires_at = serializers.DateTimeField()
    mime = serializers.ChoiceField(choices=IMAGE_MIMES)
    size = serializers.IntegerField(min_value=0, help_text="Bytes.")


# --- helpers -------------------------------------------------------------------------------------
def _parsed_upload(request: Request, serializer_class: type[serializers.Serializer[Any]]) -> Any:
    """The validated multipart form; the declared body size is checked before it is read."""
    media_service.refuse_oversized_body(request.META.get("CONTENT_LENGTH"))
    try:
        data = request.data
    except RequestDataTooBig as error:
        raise PayloadTooLarge("The form fields are too large.") from error
    except SuspiciousOperation as error:
        raise BadRequest("The multipart body is malformed.", code="malformed_request") from error
    form = serializer_class(data=data)
    form.is_valid(raise_exception=True)
    return form.validated_data


def _upload(file: Any) -> Upload:
    return Upload(stream=file, size=int(file.size or 0), name=str(file.name or ""))


def _actor(request: Request) -> str:
    return str(request.user.get_username()) if request.user else ""


def _query(request: Request, serializer_class: type[serializers.Serializer[Any]]) -> Any:
    # A plain dict: with a QueryDict, a missing boolean would read as false; empty = left out.
    raw = {key: value for key, value in request.query_params.items() if value != ""}
    query = serializer_class(data=raw)
    query.is_valid(raise_exception=True)
    return query.validated_data


UPLOAD_ERRORS = errors(400, 404, 413, 415, 422)


# --- views ---------------------------------------------------------------------------------------
class TemplateRegisterView(APIView):
    required_scopes = {"POST": "media:write"}
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="template_media_register",
        request={"multipart/form-data": TemplateUpload},
        responses={201: TemplateMediaSerializer, **AUTHENTICATED_ERRORS, **UPLOAD_ERRORS},
        tags=["templates"],
        description="Upload a template image (type decided from its bytes: JPEG, PNG or WebP, "
        "else 415; a damaged image is a 400 `invalid_image`; over the upload limit a 413) and, "
        "with slot_id + setting_key, bind it to that slot at once: the slot's setting then "
        "names the new template (404 unknown slot; 422 when the key is not a template setting "
        "of the slot's operation). Nothing is kept when any check fails.",
    )
    def post(self, request: Request) -> Response:
        form = _parsed_upload(request, TemplateUpload)
        target = (
            BindingTarget(slot_id=form["slot_id"], setting_key=form["setting_key"])
            if form.get("slot_id")
            else None
        )
        template = media_service.upload_template(
            _upload(form["file"]),
            bind_to=target,
            actor=_actor(request),
            request=request._request,
        )
        return Response(
            TemplateMediaSerializer(media_service.serialize_template(template)).data, 201
        )


class TemplateListView(APIView):
    required_scopes = {"GET": "slots:read"}

    @extend_schema(
        operation_id="template_media_list",
        parameters=[TemplateListQuery],
        responses={200: TemplateMediaPageSerializer, **AUTHENTICATED_ERRORS, **errors(422)},
        tags=["templates"],
        description="Templates, newest first, with the slot settings each is bound to.",
    )
    def get(self, request: Request) -> Response:
        params = _query(request, TemplateListQuery)
        page = media_service.template_page(page=params["page"], page_size=params["page_size"])
        return Response(
            TemplateMediaPageSerializer(
                {
                    "count": page.count,
                    "page": page.page,
                    "page_size": page.page_size,
                    "results": [media_service.serialize_template(t) for t in page.results],
                }
            ).data
        )


class TemplateDetailView(APIView):
    required_scopes = {"GET": "slots:read", "DELETE": "media:write"}

    @extend_schema(
        operation_id="template_media_retrieve",
        parameters=[TEMPLATE_ID],
        responses={200: TemplateMediaSerializer, **AUTHENTICATED_ERRORS, **errors(404)},
        tags=["templates"],
    )
    def get(self, request: Request, template_id: str) -> Response:
        template = media_service.get_template(template_id)
        return Response(TemplateMediaSerializer(media_service.serialize_template(template)).data)

    @extend_schema(
        operation_id="template_media_delete",
        parameters=[TEMPLATE_ID, TemplateDeleteQuery],
        responses={
            204: OpenApiResponse(description="Unbound, or deleted."),
            **AUTHENTICATED_ERRORS,
            **errors(404, 409, 422),
        },
        tags=["templates"],
        description="With slot_id + setting_key: remove that one binding and the slot's setting; "
        "the template stays. Without: delete the template. 409 `template_in_use` (details: "
        "`bindings`) while a slot binds it, and 409 `template_required` when unbinding a "
        "setting the slot's operation requires, unless force=true: the settings are then "
        "removed and every slot that required the template is switched off. Jobs already "
        "queued still get the template (its file stays until they finish).",
    )
    def delete(self, request: Request, template_id: str) -> Response:
        params = _query(request, TemplateDeleteQuery)
        if params.get("slot_id"):
            media_service.unbind_template(
                template_id,
                BindingTarget(slot_id=params["slot_id"], setting_key=params["setting_key"]),
                force=params["force"],
                actor=_actor(request),
                request=request._request,
            )
        else:
            media_service.delete_template(
                template_id, force=params["force"], actor=_actor(request), request=request._request
            )
        return Response(status=204)


class TemplateFileView(APIView):
    required_scopes = {"GET": "slots:read"}

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The image is not rendered by DRF: any Accept header is fine (errors stay JSON).
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="template_media_file",
        parameters=[TEMPLATE_ID],
        responses={
            **{(200, mime): OpenApiTypes.BINARY for mime in sorted(files.EXTENSIONS)},
            **AUTHENTICATED_ERRORS,
            **errors(404),
        },
        tags=["templates"],
        description="The template image itself (for previews), served with its own type and "
        "`X-Content-Type-Options: nosniff`.",
    )
    def get(self, request: Request, template_id: str) -> FileResponse:
        template = media_service.get_template(template_id)
        stream, filename = media_service.template_file_info(template)
        response = FileResponse(stream, content_type=template.mime, filename=filename)
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, max-age=3600"
        return response


class MediaRegisterView(APIView):
    required_scopes = {"POST": "media:write"}
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="media_register",
        request={"multipart/form-data": TemporaryMediaUpload},
        responses={
            201: TemporaryMediaSerializer,
            **AUTHENTICATED_ERRORS,
            **errors(400, 413, 415, 422),
        },
        tags=["media"],
        description="Publish an image at a temporary public URL (GET /public/media/<id>: 200 "
        "until expires_at, then 410). ttl_seconds 1..3600, one hour by default.",
    )
    def post(self, request: Request) -> Response:
        form = _parsed_upload(request, TemporaryMediaUpload)
        media = media_service.register_temporary_media(
            _upload(form["file"]), ttl_seconds=form.get("ttl_seconds")
        )
        body = {
            "id": media.id,
            "public_url": media_service.public_media_url(media.id),
            "expires_at": media.expires_at,
            "mime": media.mime,
            "size": media.size,
        }
        return Response(TemporaryMediaSerializer(body).data, status=201)


urlpatterns = [
    path("template-media/register", TemplateRegisterView.as_view(), name="api-template-register"),
    path("template-media", TemplateListView.as_view(), name="api-templates"),
    path("template-media/<str:template_id>", TemplateDetailView.as_view(), name="api-template"),
    path(
        "template-media/<str:template_id>/file",
        TemplateFileView.as_view(),
        name="api-template-file",
    ),
    path("media/register", MediaRegisterView.as_view(), name="api-media-register"),
]
