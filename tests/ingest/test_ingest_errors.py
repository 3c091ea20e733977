"""Every way POST /ingest/<slot_id> can refuse a request, answered in the one JSON error shape.

Refusals are checked in-process with Django's test client: each must answer at once, in the
JSON shape with `Cache-Control: no-store`, and leave nothing behind — no job, no log row, no file.
What an accepted upload keeps (its extra form fields) is checked through the real server.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from ingest.models import IngestSettings, Slot
from jobqueue.models import Job, ProcessingLog
from tests.conftest import Stack
from tests.support.images import make_photo

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

URL = "/ingest/slot-001"
HEIC_HEADER = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 2048


def upload(
    data: bytes, name: str = "IMG_0003.JPG", content_type: str = "image/jpeg"
) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def assert_json_error(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """The response is the product's JSON error with this status and code; returns `error`."""
    assert response["Content-Type"] == "application/json", response.status_code
    body = response.json()
    assert response.status_code == status, body
    assert response["Cache-Control"] == "no-store"
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return dict(error)


def stored_files(root: Path) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def assert_nothing_left_behind(media_root: Path) -> None:
    assert not Job.objects.exists()
    assert not ProcessingLog.objects.exists()
    assert stored_files(media_root) == []


# --- 400 -------------------------------------------------------------------------------------
def test_upload_without_the_photo_field_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.post(URL, {"password": ingest_password, "photo": upload(make_photo())})

    error = assert_json_error(response, 400, "missing_file")
    assert error["details"] == {"field": "fileToUpload"}
    assert_nothing_left_behind(media_root)


def test_empty_photo_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(b"")})

    assert_json_error(response, 400, "missing_file")
    assert_nothing_left_behind(media_root)


def test_json_body_instead_of_multipart_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.post(
        URL,
        data=json.dumps({"password": ingest_password, "fileToUpload": "aGVsbG8="}),
        content_type="application/json",
    )

    error = assert_json_error(response, 400, "expected_multipart")
    assert error["details"] == {"content_type": "application/json"}
    assert_nothing_left_behind(media_root)


def _multipart_body(boundary: str, password: str, photo: bytes) -> bytes:
    return (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="password"\r\n\r\n'
            f"{password}\r\n"
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="fileToUpload"; filename="IMG_0003.JPG"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_multipart_without_a_boundary_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    body = _multipart_body("XyZ123", ingest_password, make_photo())

    response = client.generic("POST", URL, body, content_type="multipart/form-data")

    assert_json_error(response, 400, "malformed_multipart")
    assert_nothing_left_behind(media_root)


def test_multipart_with_an_invalid_boundary_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    body = _multipart_body("XyZ123", ingest_password, make_photo())

    response = client.generic(
        "POST", URL, body, content_type='multipart/form-data; boundary="bad\x01boundary"'
    )

    assert_json_error(response, 400, "malformed_multipart")
    assert_nothing_left_behind(media_root)


def test_multipart_body_cut_off_inside_the_photo_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    photo = make_photo()
    body = _multipart_body("XyZ123", ingest_password, photo)
    truncated = body[: body.index(photo) + len(photo) // 2]

    response = client.generic(
        "POST", URL, truncated, content_type="multipart/form-data; boundary=XyZ123"
    )

    # The photo part never ended: it was not received.
    assert_json_error(response, 400, "missing_file")
    assert_nothing_left_behind(media_root)


def test_text_file_named_like_a_photo_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    text = upload(b"Dear guests, welcome to the party!\n" * 50, name="IMG_0003.jpg")

    response = client.post(URL, {"password": ingest_password, "fileToUpload": text})

    assert_json_error(response, 400, "not_an_image")
    assert_nothing_left_behind(media_root)


@pytest.fixture(params=["decode", "structure"])
def image_check(request: pytest.FixtureRequest, settings: Any) -> str:
    """Both ways of checking uploads (INGEST_IMAGE_CHECK) must refuse broken files."""
    settings.INGEST_IMAGE_CHECK = request.param
    return str(request.param)


def test_corrupt_jpeg_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path, image_check: str
) -> None:
    # A JPEG signature followed by noise: announces itself as a JPEG but is not one.
    corrupt = b"\xff\xd8\xff\xe0" + os.urandom(4000)

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(corrupt)})

    assert_json_error(response, 400, "invalid_image")
    assert_nothing_left_behind(media_root)


def test_truncated_jpeg_is_refused_with_400(
    live_db: None, client: Client, ingest_password: str, media_root: Path, image_check: str
) -> None:
    # Should the photo be (wrongly) queued, the view waits for its job with no worker running:
    # a short deadline bounds the wait, and committed rows let the waiter poll in its own way.
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=1)
    photo = make_photo()
    truncated = photo[: len(photo) // 2]

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(truncated)})

    assert_json_error(response, 400, "invalid_image")
    assert_nothing_left_behind(media_root)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_truncated_png_and_webp_are_refused_with_400(
    client: Client, ingest_password: str, media_root: Path, image_check: str, fmt: str
) -> None:
    photo = make_photo(format=fmt)
    truncated = photo[: len(photo) * 2 // 3]

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(truncated)})

    assert_json_error(response, 400, "invalid_image")
    assert_nothing_left_behind(media_root)


def test_image_with_more_pixels_than_allowed_is_refused_before_decoding(
    client: Client, ingest_password: str, media_root: Path, settings: Any
) -> None:
    # A decompression bomb in miniature: small file, many pixels.
    settings.INGEST_MAX_IMAGE_PIXELS = 640 * 480 - 1
    photo = make_photo(width=640, height=480)

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(photo)})

    error = assert_json_error(response, 400, "too_many_pixels")
    assert error["details"] == {"width": 640, "height": 480, "max_pixels": 640 * 480 - 1}
    assert_nothing_left_behind(media_root)


# --- 401 -------------------------------------------------------------------------------------
def test_wrong_password_is_refused_with_401_and_never_logged(
    client: Client, ingest_password: str, media_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-booth-password-7731"

    response = client.post(URL, {"password": wrong, "fileToUpload": upload(make_photo())})

    assert_json_error(response, 401, "invalid_password")
    assert_nothing_left_behind(media_root)
    # The attempt is logged, the password is not.
    assert any(getattr(record, "status", None) == 401 for record in caplog.records)
    assert wrong not in caplog.text
    assert ingest_password not in caplog.text


def test_missing_password_is_refused_with_401(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.post(URL, {"fileToUpload": upload(make_photo())})

    assert_json_error(response, 401, "missing_password")
    assert_nothing_left_behind(media_root)


@pytest.mark.parametrize("password", ["booth-secret-1234", "anything"])
def test_every_upload_is_refused_with_401_while_no_ingest_password_is_configured(
    client: Client, db: None, media_root: Path, password: str
) -> None:
    IngestSettings.objects.filter(id=1).update(ingest_password_hash="")

    response = client.post(URL, {"password": password, "fileToUpload": upload(make_photo())})

    assert_json_error(response, 401, "ingest_password_not_configured")
    assert_nothing_left_behind(media_root)


# --- 404 -------------------------------------------------------------------------------------
def test_unknown_slot_is_refused_with_404(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.post(
        "/ingest/slot-099", {"password": ingest_password, "fileToUpload": upload(make_photo())}
    )

    error = assert_json_error(response, 404, "slot_not_found")
    assert error["details"] == {"slot_id": "slot-099"}
    assert_nothing_left_behind(media_root)


def test_inactive_slot_is_refused_with_404(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    assert not Slot.objects.get(id="slot-005").is_active

    response = client.post(
        "/ingest/slot-005", {"password": ingest_password, "fileToUpload": upload(make_photo())}
    )

    error = assert_json_error(response, 404, "slot_not_found")
    assert error["details"] == {"slot_id": "slot-005"}
    assert_nothing_left_behind(media_root)


# --- 413 -------------------------------------------------------------------------------------
def test_photo_larger_than_the_limit_is_refused_with_413(
    client: Client, ingest_password: str, media_root: Path, settings: Any
) -> None:
    settings.INGEST_MAX_UPLOAD_BYTES = 50_000
    photo = make_photo(width=2400, height=1800)
    assert len(photo) > 50_000

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(photo)})

    error = assert_json_error(response, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": 50_000, "size": len(photo)}
    assert_nothing_left_behind(media_root)


# --- 415 -------------------------------------------------------------------------------------
def test_heic_photo_for_a_provider_that_does_not_take_heic_is_refused_with_415(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    # Declared as a JPEG: the type is read from the bytes.
    response = client.post(
        URL, {"password": ingest_password, "fileToUpload": upload(HEIC_HEADER, "IMG_0003.JPG")}
    )

    error = assert_json_error(response, 415, "unsupported_media_type")
    assert error["details"]["mime"] == "image/heic"
    assert "image/heic" not in error["details"]["accepted"]
    assert "image/jpeg" in error["details"]["accepted"]
    assert_nothing_left_behind(media_root)


# --- 405 -------------------------------------------------------------------------------------
def test_get_on_the_ingest_url_is_refused_with_405(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    response = client.get(URL)

    assert_json_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert_nothing_left_behind(media_root)


# --- metadata --------------------------------------------------------------------------------
def test_any_extra_form_fields_are_kept_with_the_job(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    response = requests.post(
        f"{stack.base_url}/ingest/slot-001",
        data={
            "password": ingest_password,
            "event": "Anna & Ben — Hochzeit",
            "table": "7",
            "tag": ["first-dance", "family"],
            "empty": "",
        },
        files={"fileToUpload": ("IMG_0003.JPG", photo_jpeg, "image/jpeg")},
        timeout=30,
    )

    assert response.status_code == 200, stack.logs()
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.metadata == {
        "event": "Anna & Ben — Hochzeit",
        "table": "7",
        "tag": ["first-dance", "family"],
        "empty": "",
    }


# --- hostile files -----------------------------------------------------------------------------
def _animated(fmt: str) -> bytes:
    import io

    from PIL import Image

    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_are_refused_with_400(
    client: Client, ingest_password: str, media_root: Path, fmt: str
) -> None:
    response = client.post(
        URL, {"password": ingest_password, "fileToUpload": upload(_animated(fmt))}
    )

    assert_json_error(response, 400, "animated_image")
    assert_nothing_left_behind(media_root)


@pytest.mark.parametrize(
    "payload",
    [b"<html><script>alert(document.cookie)</script></html>", b"PK\x03\x04" + b"\x00" * 64],
)
def test_a_photo_with_a_second_file_appended_is_refused_with_400(
    client: Client, ingest_password: str, media_root: Path, payload: bytes
) -> None:
    polyglot = make_photo() + payload

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(polyglot)})

    assert_json_error(response, 400, "unexpected_trailing_data")
    assert_nothing_left_behind(media_root)


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b"GIF89a" + b"\x00" * 64,
    ],
)
def test_svg_and_gif_are_not_accepted(
    client: Client, ingest_password: str, media_root: Path, data: bytes
) -> None:
    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(data)})

    assert_json_error(response, 400, "not_an_image")
    assert_nothing_left_behind(media_root)


def test_a_decompression_bomb_is_refused_before_decoding(
    client: Client, ingest_password: str, media_root: Path
) -> None:
    import struct
    import zlib

    # A tiny PNG whose header declares 60000 x 60000 pixels (3.6 gigapixels).
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )

    response = client.post(URL, {"password": ingest_password, "fileToUpload": upload(bomb)})

    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("too_many_pixels", "invalid_image")
    assert_nothing_left_behind(media_root)


def test_repeated_wrong_passwords_from_one_address_get_429(
    client: Client, ingest_password: str, settings: Any
) -> None:
    settings.INGEST_MAX_PASSWORD_FAILURES_PER_ADDRESS = 3
    for _ in range(3):
        response = client.post(URL, {"password": "guess", "fileToUpload": upload(make_photo())})
        assert_json_error(response, 401, "invalid_password")

    refused = client.post(URL, {"password": ingest_password, "fileToUpload": upload(make_photo())})

    error = assert_json_error(refused, 429, "password_throttled")
    assert int(refused["Retry-After"]) == error["details"]["retry_after_seconds"] > 0
    other = Client(REMOTE_ADDR="10.9.9.9").post(
        URL, {"password": "guess", "fileToUpload": upload(make_photo())}
    )
    assert other.status_code == 401  # another address is not affected


def test_a_hash_field_with_any_text_never_breaks_the_upload(
    live_db: None, client: Client, ingest_password: str
) -> None:
    # Accepted photos wait for a worker that is not running here: a second bounds the wait.
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=1)

    response = client.post(
        URL,
        {"password": ingest_password, "hash": "ünïcödé ✓", "fileToUpload": upload(make_photo())},
    )

    assert_json_error(response, 504, "timeout")  # accepted and queued, not a 500
    received = ProcessingLog.objects.get(event="received")
    assert received.details["integrity"] == "mismatch"
