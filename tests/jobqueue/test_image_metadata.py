"""Camera metadata (GPS above all) never reaches what we publish; pixels stay untouched."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops

from jobqueue.image_metadata import UnreadableImage, strip_metadata

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def photo_with_metadata(fmt: str, *, orientation: int = 1) -> bytes:
    image = Image.new("RGB", (64, 48), (200, 80, 40))
    image.paste((20, 120, 220), (0, 0, 32, 24))
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0110] = "SerialCam 9000"  # Model
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    buffer = io.BytesIO()
    options: dict[str, object] = {"exif": exif}
    if fmt == "JPEG":
        options.update(quality=90, comment=b"secret comment")
    if fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Location", "secret place")
        options["pnginfo"] = info
    if fmt == "WEBP":
        options["xmp"] = b"<x:xmpmeta>secret place</x:xmpmeta>"
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    "fmt, mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_exif_gps_and_text_metadata_are_removed_and_pixels_kept(fmt: str, mime: str) -> None:
    original = photo_with_metadata(fmt)
    assert opened(original).getexif()  # the fixture really carries EXIF

    stripped = strip_metadata(original, mime)

    image = opened(stripped)
    assert not image.getexif()
    for secret in (b"SerialCam", b"CameraMaker", b"secret"):
        assert secret not in stripped
    assert (
        ImageChops.difference(image.convert("RGB"), opened(original).convert("RGB")).getbbox()
        is None
    )


def test_a_jpeg_keeps_its_compressed_data_byte_for_byte() -> None:
    original = photo_with_metadata("JPEG")

    stripped = strip_metadata(original, "image/jpeg")

    scan = original.index(b"\xff\xda")
    assert stripped.endswith(original[scan:])  # the compressed data, unchanged
    assert len(stripped) < len(original)


def test_anything_appended_after_a_jpeg_is_not_published() -> None:
    original = photo_with_metadata("JPEG") + b"<html><script>alert(1)</script></html>"

    stripped = strip_metadata(original, "image/jpeg")

    assert stripped.endswith(b"\xff\xd9") and b"<script>" not in stripped
    assert opened(stripped).size == (64, 48)


def test_a_rotated_jpeg_is_made_upright_before_its_orientation_tag_goes() -> None:
    original = photo_with_metadata("JPEG", orientation=6)  # "rotate 90° clockwise to view"

    stripped = strip_metadata(original, "image/jpeg")

    image = opened(stripped)
    assert image.size == (48, 64)  # upright, as a viewer showed the original
    assert not image.getexif()


def test_other_types_are_returned_unchanged() -> None:
    heic = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64

    assert strip_metadata(heic, "image/heic") == heic


@pytest.mark.parametrize("mime", ["image/jpeg", "image/png", "image/webp"])
def test_bytes_that_are_not_the_declared_type_are_refused(mime: str) -> None:
    with pytest.raises(UnreadableImage):
        strip_metadata(b"definitely not an image", mime)


def test_a_jpeg_without_metadata_is_published_as_it_is() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buffer, format="JPEG")
    clean = buffer.getvalue()

    assert strip_metadata(clean, "image/jpeg") is clean  # no copy, no scan
