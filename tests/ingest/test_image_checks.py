"""Polyglot detection: nothing but padding or embedded previews may follow an image's end."""

from __future__ import annotations

import io
import zipfile

import pytest

from ingest.image_checks import unexpected_trailer
from tests.support.images import make_photo

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("evil.html", HTML)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt, mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_plain_photos_pass(fmt: str, mime: str) -> None:
    assert not unexpected_trailer(make_photo(format=fmt), mime)


@pytest.mark.parametrize(
    "fmt, mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
@pytest.mark.parametrize("payload", [HTML, zip_archive()])
def test_html_or_archives_after_the_image_are_found(fmt: str, mime: str, payload: bytes) -> None:
    assert unexpected_trailer(make_photo(format=fmt) + payload, mime)


def test_camera_padding_and_embedded_previews_are_fine() -> None:
    photo = make_photo()
    preview = make_photo(width=160, height=120)

    assert not unexpected_trailer(photo + b"\x00" * 512, "image/jpeg")
    assert not unexpected_trailer(photo + preview, "image/jpeg")


def test_an_exif_thumbnail_before_the_scan_does_not_end_the_image_early() -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(make_photo()))
    exif = image.getexif()
    exif[0x010F] = "Camera"
    buffer = io.BytesIO()
    # A JPEG inside the APP1 segment (as cameras embed thumbnails) contains its own FFD9.
    image.save(buffer, format="JPEG", exif=exif.tobytes() + make_photo(width=16, height=16))

    assert not unexpected_trailer(buffer.getvalue(), "image/jpeg")
