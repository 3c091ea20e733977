"""Template media (upload, bind, list, preview, unbind, delete) and temporary public media."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent
from ingest.models import Slot, TemplateBinding, TemplateMedia
from ingest.services import (
    IngestUpload,
    accept_photo,
    job_configuration,
    register_template,
    update_slot,
)
from jobqueue import files, services
from jobqueue.models import Job, MediaObject
from photobooth.errors import NotFound
from tests.api.conftest import assert_error
from tests.support.images import make_frame_png, make_photo

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example.org"
FRAME_SLOT = "slot-002"  # local / frame_overlay: the frame is a required template
GEMINI_SLOT = "slot-003"  # gemini / image_edit: the reference image is an optional template
TEMPLATE_KEYS = {
    "id",
    "mime",
    "size",
    "width",
    "height",
    "sha256",
    "original_name",
    "created_at",
    "bindings",
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """Logins are not what these tests are about: skip the deliberately slow hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.PUBLIC_BASE_URL = BASE_URL


@pytest.fixture
def api(api_client_with: Callable[..., APIClient]) -> APIClient:
    return api_client_with("media:write", "slots:read")


# --- helpers -------------------------------------------------------------------------------------
def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> Any:
    return SimpleUploadedFile(name, data, content_type=content_type)


def register(client: APIClient, data: bytes, name: str = "frame.png", **fields: str) -> Any:
    return client.post(
        "/api/template-media/register",
        {"file": upload(name, data), **fields},
        format="multipart",
    )


def stored_files(media_root: Path, folder: str) -> list[Path]:
    return [p for p in (media_root / folder).rglob("*") if p.is_file()]


def assert_nothing_stored(media_root: Path) -> None:
    assert not TemplateMedia.objects.exists()
    assert not MediaObject.objects.exists()
    assert stored_files(media_root, "templates") == []
    assert stored_files(media_root, "media") == []


def template_row(data: bytes | None = None, name: str = "frame.png") -> TemplateMedia:
    return register_template(stream=io.BytesIO(data or make_frame_png()), original_name=name)


def frame_slot(template: TemplateMedia, slot_id: str = FRAME_SLOT) -> Slot:
    return update_slot(
        slot_id=slot_id,
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(template.id)},
        is_active=True,
    )


def gemini_slot(template: TemplateMedia | None = None) -> Slot:
    settings: dict[str, Any] = {"prompt": "make it golden"}
    if template is not None:
        settings["reference_media_id"] = str(template.id)
    return update_slot(
        slot_id=GEMINI_SLOT,
        provider_id="gemini",
        operation_id="image_edit",
        settings=settings,
        is_active=True,
    )


def truncated_jpeg() -> bytes:
    photo = make_photo()
    return photo[: len(photo) // 2]


# --- POST /api/template-media/register -----------------------------------------------------------
def test_register_stores_the_template_and_answers_its_description(
    api: APIClient, media_root: Path
) -> None:
    data = make_frame_png(width=400, height=300)

    response = register(api, data, name="gold frame.png")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == TEMPLATE_KEYS
    assert body["mime"] == "image/png"
    assert (body["width"], body["height"]) == (400, 300)
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["original_name"] == "gold frame.png"
    assert body["bindings"] == []
    template = TemplateMedia.objects.get(id=body["id"])
    assert files.read_bytes(template.path) == data
    event = AuditEvent.objects.get(kind="template_changed")
    assert event.details["action"] == "uploaded"
    assert event.details["template_id"] == body["id"]


def test_register_with_a_slot_binds_it_and_points_the_setting_at_it(api: APIClient) -> None:
    old = template_row()
    frame_slot(old)

    response = register(api, make_frame_png(), slot_id=FRAME_SLOT, setting_key="frame_media_id")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["bindings"] == [{"slot_id": FRAME_SLOT, "setting_key": "frame_media_id"}]
    slot = Slot.objects.get(id=FRAME_SLOT)
    assert slot.settings_json["frame_media_id"] == body["id"]
    assert slot.is_active
    binding = TemplateBinding.objects.get(slot_id=FRAME_SLOT, setting_key="frame_media_id")
    assert str(binding.template_id) == body["id"]
    assert TemplateMedia.objects.filter(id=old.id).exists()  # replaced, not deleted
    assert configuration_template_id(slot) == body["id"]


def configuration_template_id(slot: Slot) -> str:
    return job_configuration(slot).template_refs["frame_media_id"]["id"]


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"%PDF-1.7 not an image at all", "frame.png"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "photo.heic"),
        (b"GIF89a" + b"\x00" * 64, "anim.gif"),
    ],
    ids=["pdf", "heic", "gif"],
)
def test_register_refuses_other_types_with_415_whatever_the_name_says(
    api: APIClient, media_root: Path, data: bytes, name: str
) -> None:
    error = assert_error(register(api, data, name=name), 415, "unsupported_media_type")

    assert error["details"]["accepted"] == ["image/jpeg", "image/png", "image/webp"]
    assert_nothing_stored(media_root)


def test_register_refuses_a_damaged_image_with_400(api: APIClient, media_root: Path) -> None:
    assert_error(register(api, truncated_jpeg(), name="frame.jpg"), 400, "invalid_image")

    assert_nothing_stored(media_root)


def test_register_refuses_a_file_over_the_limit_with_413(
    api: APIClient, media_root: Path, settings: Any
) -> None:
    data = make_frame_png()
    settings.INGEST_MAX_UPLOAD_BYTES = len(data) - 1

    error = assert_error(register(api, data), 413, "payload_too_large")

    assert error["details"] == {"max_bytes": len(data) - 1, "size": len(data)}
    assert_nothing_stored(media_root)


def test_register_refuses_an_oversized_declared_body_before_reading_it(
    api: APIClient, media_root: Path, settings: Any
) -> None:
    # The body is tiny: had it been read up to the declared length, the test client would fail.
    response = api.post(
        "/api/template-media/register",
        {"file": upload("frame.png", make_frame_png())},
        format="multipart",
        CONTENT_LENGTH=str(10**10),
    )

    error = assert_error(response, 413, "payload_too_large")
    assert error["details"]["max_bytes"] == settings.INGEST_MAX_UPLOAD_BYTES
    assert_nothing_stored(media_root)


def test_register_for_an_unknown_slot_is_404(api: APIClient, media_root: Path) -> None:
    response = register(api, make_frame_png(), slot_id="slot-999", setting_key="frame_media_id")

    assert_error(response, 404, "slot_not_found")
    assert_nothing_stored(media_root)


def test_register_for_a_key_that_is_no_template_setting_is_422(
    api: APIClient, media_root: Path
) -> None:
    # slot-001 runs local/photo_look, which takes no template at all.
    response = register(api, make_frame_png(), slot_id="slot-001", setting_key="frame_media_id")

    error = assert_error(response, 422, "validation_failed")
    assert set(error["details"]) == {"setting_key"}
    assert_nothing_stored(media_root)


def test_register_leaves_nothing_when_the_slot_settings_do_not_validate(
    api: APIClient, media_root: Path
) -> None:
    gemini_slot()
    # Settings broken behind the API's back (say, by an older release): binding must not save.
    Slot.objects.filter(id=GEMINI_SLOT).update(settings_json={})

    response = register(
        api, make_frame_png(), slot_id=GEMINI_SLOT, setting_key="reference_media_id"
    )

    error = assert_error(response, 422, "validation_failed")
    assert "prompt" in error["details"]
    assert_nothing_stored(media_root)
    assert not TemplateBinding.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [({}, "file"), ({"slot_id": FRAME_SLOT}, "setting_key"), ({"setting_key": "x"}, "slot_id")],
    ids=["no-file", "slot-without-key", "key-without-slot"],
)
def test_register_with_missing_fields_is_422(
    api: APIClient, media_root: Path, fields: dict[str, str], field: str
) -> None:
    if field != "file":
        fields = {"file": upload("frame.png", make_frame_png()), **fields}
    response = api.post("/api/template-media/register", fields, format="multipart")

    error = assert_error(response, 422, "validation_failed")
    assert field in error["details"]
    assert_nothing_stored(media_root)


def test_register_wants_multipart(api: APIClient) -> None:
    response = api.post("/api/template-media/register", {"file": "x"}, format="json")

    assert_error(response, 415, "unsupported_media_type")


# --- GET /api/template-media, /<id>, /<id>/file ---------------------------------------------------
def test_list_shows_templates_newest_first_with_their_bindings(api: APIClient) -> None:
    older = template_row(name="older.png")
    newer = template_row(name="newer.png")
    TemplateMedia.objects.filter(id=older.id).update(created_at=timezone.now() - timedelta(hours=1))
    frame_slot(newer)

    body = api.get("/api/template-media", {"page_size": 1}).json()

    assert (body["count"], body["page"], body["page_size"]) == (2, 1, 1)
    [first] = body["results"]
    assert set(first) == TEMPLATE_KEYS
    assert first["id"] == str(newer.id)
    assert first["bindings"] == [{"slot_id": FRAME_SLOT, "setting_key": "frame_media_id"}]
    second = api.get("/api/template-media", {"page": 2, "page_size": 1}).json()["results"]
    assert [t["id"] for t in second] == [str(older.id)]
    assert api.get("/api/template-media", {"page": 3, "page_size": 1}).json()["results"] == []
    assert_error(api.get("/api/template-media", {"page_size": 0}), 422, "validation_failed")


def test_detail_describes_one_template(api: APIClient) -> None:
    template = template_row(name="frame.png")
    frame_slot(template)

    body = api.get(f"/api/template-media/{template.id}").json()

    assert body == {
        "id": str(template.id),
        "mime": "image/png",
        "size": template.size,
        "width": template.width,
        "height": template.height,
        "sha256": template.sha256,
        "original_name": "frame.png",
        "created_at": body["created_at"],
        "bindings": [{"slot_id": FRAME_SLOT, "setting_key": "frame_media_id"}],
    }


@pytest.mark.parametrize("suffix", ["", "/file"])
@pytest.mark.parametrize("template_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_template_is_404(api: APIClient, template_id: str, suffix: str) -> None:
    response = api.get(f"/api/template-media/{template_id}{suffix}")

    assert_error(response, 404, "template_not_found")


def test_file_serves_the_image_itself(api: APIClient) -> None:
    data = make_photo(width=64, height=48, format="WEBP")
    template = template_row(data, name="style.webp")

    response = api.get(f"/api/template-media/{template.id}/file", HTTP_ACCEPT="image/*")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["Content-Type"] == "image/webp"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline")


# --- DELETE /api/template-media/<id> -------------------------------------------------------------
def delete(client: APIClient, template_id: Any, **params: str) -> Any:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return client.delete(f"/api/template-media/{template_id}?{query}")


def test_unbinding_an_optional_setting_clears_it_and_keeps_the_template(
    api: APIClient,
) -> None:
    template = template_row()
    gemini_slot(template)

    response = delete(api, template.id, slot_id=GEMINI_SLOT, setting_key="reference_media_id")

    assert response.status_code == 204
    slot = Slot.objects.get(id=GEMINI_SLOT)
    assert "reference_media_id" not in slot.settings_json
    assert slot.is_active
    assert not TemplateBinding.objects.exists()
    assert files.exists(TemplateMedia.objects.get(id=template.id).path)
    event = AuditEvent.objects.get(kind="template_changed")
    assert event.details["action"] == "unbound"


def test_unbinding_a_required_setting_is_409_unless_forced_which_switches_the_slot_off(
    api: APIClient,
) -> None:
    template = template_row()
    frame_slot(template)

    refused = delete(api, template.id, slot_id=FRAME_SLOT, setting_key="frame_media_id")

    error = assert_error(refused, 409, "template_required")
    assert error["details"] == {"slot_id": FRAME_SLOT, "setting_key": "frame_media_id"}
    assert Slot.objects.get(id=FRAME_SLOT).is_active
    forced = delete(
        api, template.id, slot_id=FRAME_SLOT, setting_key="frame_media_id", force="true"
    )
    assert forced.status_code == 204
    slot = Slot.objects.get(id=FRAME_SLOT)
    assert not slot.is_active
    assert "frame_media_id" not in slot.settings_json
    assert TemplateMedia.objects.filter(id=template.id).exists()


def test_unbinding_what_is_not_bound_is_404(api: APIClient) -> None:
    template = template_row()

    response = delete(api, template.id, slot_id=FRAME_SLOT, setting_key="frame_media_id")

    assert_error(response, 404, "binding_not_found")


def test_deleting_an_unused_template_removes_row_and_file(api: APIClient) -> None:
    template = template_row()

    response = delete(api, template.id)

    assert response.status_code == 204
    assert not TemplateMedia.objects.exists()
    assert not files.exists(template.path)
    assert_error(delete(api, template.id), 404, "template_not_found")


def test_deleting_a_used_template_is_409_naming_its_bindings_unless_forced(
    api: APIClient, ingest_password: str
) -> None:
    template = template_row()
    frame_slot(template)
    gemini_slot(template)

    refused = delete(api, template.id)

    error = assert_error(refused, 409, "template_in_use")
    assert error["details"]["bindings"] == [
        {"slot_id": FRAME_SLOT, "setting_key": "frame_media_id"},
        {"slot_id": GEMINI_SLOT, "setting_key": "reference_media_id"},
    ]
    assert TemplateMedia.objects.filter(id=template.id).exists()
    forced = delete(api, template.id, force="true")
    assert forced.status_code == 204
    assert not TemplateMedia.objects.exists()
    assert not TemplateBinding.objects.exists()
    assert not files.exists(template.path)
    frame, gemini = Slot.objects.get(id=FRAME_SLOT), Slot.objects.get(id=GEMINI_SLOT)
    assert (frame.is_active, gemini.is_active) == (False, True)  # only a required one goes off
    assert "frame_media_id" not in frame.settings_json
    assert "reference_media_id" not in gemini.settings_json
    event = AuditEvent.objects.filter(kind="template_changed").latest("created_at")
    assert event.details["deactivated_slots"] == [FRAME_SLOT]
    # The booth is told at once, instead of photos being queued only to fail.
    with pytest.raises(NotFound) as refused_ingest:
        ingest(FRAME_SLOT, ingest_password)
    assert refused_ingest.value.code == "slot_not_found"
    assert ingest(GEMINI_SLOT, ingest_password).slot_id == GEMINI_SLOT


def ingest(slot_id: str, password: str) -> Job:
    photo = make_photo(width=64)
    return accept_photo(
        IngestUpload(
            slot_id=slot_id,
            password=password,
            photo=io.BytesIO(photo),
            photo_size=len(photo),
            photo_name="IMG_0001.JPG",
            fields={},
            received_at=timezone.now(),
        ),
        max_upload_bytes=15 * 1024 * 1024,
    )


def test_a_queued_job_keeps_the_file_of_a_deleted_template(api: APIClient) -> None:
    template = template_row()
    slot = frame_slot(template)
    payload = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    job = services.enqueue_job(
        configuration=job_configuration(slot),
        payload=services.StoredPayload(
            path=payload.path, mime="image/jpeg", size=payload.size, sha256=payload.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=1),
    )

    response = delete(api, template.id, force="true")

    assert response.status_code == 204
    assert not TemplateMedia.objects.exists()
    assert files.exists(template.path)  # the queued job still reads it
    Job.objects.filter(id=job.id).update(is_finalized=True, finalized_at=timezone.now())
    other = template_row()
    assert delete(api, other.id).status_code == 204
    assert not files.exists(other.path)


def test_delete_with_half_a_binding_is_422(api: APIClient) -> None:
    template = template_row()

    error = assert_error(delete(api, template.id, slot_id=FRAME_SLOT), 422, "validation_failed")

    assert set(error["details"]) == {"setting_key"}


# --- POST /api/media/register and GET /public/media/<id> -----------------------------------------
def register_media(client: APIClient, data: bytes, **fields: Any) -> Any:
    return client.post(
        "/api/media/register", {"file": upload("photo.jpg", data), **fields}, format="multipart"
    )


def test_media_register_publishes_the_image_until_it_expires(
    api: APIClient, anonymous_api: APIClient
) -> None:
    data = make_photo(width=64, height=48)
    before = timezone.now()

    response = register_media(api, data)

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "public_url", "expires_at", "mime", "size"}
    assert body["public_url"] == f"{BASE_URL}/public/media/{body['id']}"
    assert (body["mime"], body["size"]) == ("image/jpeg", len(data))
    media = MediaObject.objects.get(id=body["id"])
    assert media.job_id is None
    assert before + timedelta(seconds=3600) <= media.expires_at
    assert media.expires_at <= timezone.now() + timedelta(seconds=3600)
    public_path = f"/public/media/{body['id']}"
    served = anonymous_api.get(public_path)
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == data
    assert served["Content-Type"] == "image/jpeg"
    MediaObject.objects.filter(id=media.id).update(expires_at=timezone.now())
    assert_error(anonymous_api.get(public_path), 410, "media_expired")
    assert_error(anonymous_api.get(f"/public/media/{uuid.uuid4()}"), 404, "media_not_found")


def test_media_register_takes_a_lifetime(api: APIClient) -> None:
    response = register_media(api, make_photo(width=32), ttl_seconds=60)

    assert response.status_code == 201
    media = MediaObject.objects.get(id=response.json()["id"])
    assert media.expires_at - media.created_at == timedelta(seconds=60)


@pytest.mark.parametrize("ttl", [0, 3601, "soon"])
def test_media_register_refuses_a_lifetime_out_of_range(
    api: APIClient, media_root: Path, ttl: Any
) -> None:
    error = assert_error(register_media(api, make_photo(width=32), ttl_seconds=ttl), 422)

    assert set(error["details"]) == {"ttl_seconds"}
    assert_nothing_stored(media_root)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "unsupported_media_type"),
        (truncated_jpeg(), 400, "invalid_image"),
    ],
    ids=["svg", "damaged"],
)
def test_media_register_checks_the_image(
    api: APIClient, media_root: Path, data: bytes, status: int, code: str
) -> None:
    assert_error(register_media(api, data), status, code)

    assert_nothing_stored(media_root)


def test_media_register_refuses_a_file_over_the_limit(
    api: APIClient, media_root: Path, settings: Any
) -> None:
    settings.INGEST_MAX_UPLOAD_BYTES = 100

    assert_error(register_media(api, make_photo(width=32)), 413, "payload_too_large")

    assert_nothing_stored(media_root)


# --- permissions ---------------------------------------------------------------------------------
ENDPOINTS = [
    ("post", "/api/template-media/register", "media:write"),
    ("get", "/api/template-media", "slots:read"),
    ("get", "/api/template-media/{id}", "slots:read"),
    ("get", "/api/template-media/{id}/file", "slots:read"),
    ("delete", "/api/template-media/{id}", "media:write"),
    ("post", "/api/media/register", "media:write"),
]


@pytest.mark.parametrize(("method", "url", "scope"), ENDPOINTS)
def test_permissions(
    api_client_with: Callable[..., APIClient],
    anonymous_api: APIClient,
    method: str,
    url: str,
    scope: str,
) -> None:
    template = template_row()
    url = url.format(id=template.id)
    other_scopes = {"media:write", "slots:read", "settings:read", "stats:read"} - {scope}

    def call(client: APIClient) -> Any:
        if method == "post":
            return client.post(
                url, {"file": upload("frame.png", make_frame_png())}, format="multipart"
            )
        return getattr(client, method)(url)

    assert_error(call(anonymous_api), 401, "not_authenticated")
    assert_error(call(api_client_with(*sorted(other_scopes))), 403, "forbidden")
    assert call(api_client_with(scope)).status_code in (200, 201, 204)
