"""Stamping a QR code of the guest page onto a result image (jobqueue.qr_stamp).

No QR decoder is available to the tests, so the stamp is checked against segno's own matrix for
the address: every module of the stamped square has the colour segno says, the square sits in
the bottom-right corner at the documented size, and the rest of the image is untouched.
"""

from __future__ import annotations

import io
import logging

import pytest
import segno
from PIL import Image, ImageCms, ImageDraw

from jobqueue.qr_stamp import (
    MIN_SIDE_PX,
    Placement,
    QrStampError,
    placement,
    stamp_qr,
    stamp_qr_if_possible,
)
from tests.support.images import make_photo, open_image

URL = "https://booth.example/r/6f1c2a9e-3b7d-4e0f-9a51-2c8d7e6b4a10"


def modules_of(url: str) -> list[list[bool]]:
    """segno's symbol for the address, quiet zone (4 modules) included."""
    symbol = segno.make(url, error="m", micro=False)
    return [[bool(m) for m in row] for row in symbol.matrix_iter(scale=1, border=4)]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def grey(pixel: object) -> int:
    """A pixel's brightness 0–255, whatever the mode."""
    if isinstance(pixel, int):
        return pixel
    assert isinstance(pixel, tuple)
    channels = pixel[:3] if len(pixel) >= 3 else pixel[:1]
    return sum(channels) // len(channels)


def assert_stamp_matches_segno(image: Image.Image, url: str, *, exact: bool) -> None:
    """Every pixel of the stamped square is the colour of its module in segno's matrix (exact),
    or at least every module's centre is (for lossy JPEG/WebP)."""
    modules = modules_of(url)
    where = placement(image.width, image.height, len(modules))
    rgb = image.convert("RGB")
    for row, line in enumerate(modules):
        for column, dark in enumerate(line):
            left = where.left + column * where.module_px
            top = where.top + row * where.module_px
            points = (
                [
                    (left + dx, top + dy)
                    for dx in range(where.module_px)
                    for dy in range(where.module_px)
                ]
                if exact
                else [(left + where.module_px // 2, top + where.module_px // 2)]
            )
            for point in points:
                value = grey(rgb.getpixel(point))
                if exact:
                    assert value == (0 if dark else 255), (row, column, point, value)
                else:
                    assert (value < 100) if dark else (value > 155), (row, column, point, value)


def outside(image: Image.Image, where: Placement) -> list[object]:
    """Every pixel outside the stamp's square."""
    box = (where.left, where.top, where.left + where.side, where.top + where.side)
    return [
        image.getpixel((x, y))
        for y in range(image.height)
        for x in range(image.width)
        if not (box[0] <= x < box[2] and box[1] <= y < box[3])
    ]


# --- placement -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("width", "height"), [(1024, 1024), (1800, 1200), (1200, 1800), (400, 300)]
)
def test_the_code_is_about_12_percent_at_least_96px_in_the_bottom_right_corner(
    width: int, height: int
) -> None:
    count = len(modules_of(URL))

    where = placement(width, height, count)

    shorter = min(width, height)
    assert where.side == where.module_px * count
    assert where.side >= max(MIN_SIDE_PX, round(0.12 * shorter))
    assert where.side < max(MIN_SIDE_PX, round(0.12 * shorter)) + count  # no bigger than needed
    right_margin = width - (where.left + where.side)
    bottom_margin = height - (where.top + where.side)
    assert right_margin == bottom_margin
    assert 4 <= right_margin <= max(4, round(0.02 * shorter))


def test_an_image_too_small_for_the_code_is_refused() -> None:
    with pytest.raises(QrStampError, match="too small"):
        placement(150, 150, len(modules_of(URL)))


# --- PNG: lossless, so checked pixel by pixel ----------------------------------------------------
def test_png_stamp_is_segnos_matrix_and_the_rest_is_unchanged() -> None:
    original_bytes = make_photo(width=800, height=600, format="PNG")
    original = open_image(original_bytes)

    stamped_bytes = stamp_qr(original_bytes, "image/png", URL)

    stamped = open_image(stamped_bytes)
    assert stamped.format == "PNG"
    assert stamped.size == original.size and stamped.mode == original.mode
    assert_stamp_matches_segno(stamped, URL, exact=True)
    where = placement(800, 600, len(modules_of(URL)))
    assert outside(stamped, where) == outside(original, where)
    assert stamped_bytes != original_bytes


def test_a_different_address_gives_a_different_stamp() -> None:
    photo = make_photo(width=800, height=600, format="PNG")
    other = URL.replace("6f1c", "0000")

    first, second = (open_image(stamp_qr(photo, "image/png", url)) for url in (URL, other))

    assert first.tobytes() != second.tobytes()
    assert_stamp_matches_segno(second, other, exact=True)


def test_transparent_png_keeps_its_transparency_outside_the_opaque_stamp() -> None:
    frame = Image.new("RGBA", (640, 480), (0, 0, 0, 0))
    ImageDraw.Draw(frame).rectangle((0, 0, 639, 479), outline=(255, 0, 255, 255), width=20)

    stamped = open_image(stamp_qr(png(frame), "image/png", URL))

    assert stamped.mode == "RGBA"
    where = placement(640, 480, len(modules_of(URL)))
    assert outside(stamped, where) == outside(frame, where)
    corner = stamped.getpixel((where.left + 1, where.top + 1))
    assert corner == (255, 255, 255, 255)  # the quiet zone is opaque white
    assert_stamp_matches_segno(stamped, URL, exact=True)


def test_palette_png_stays_png_and_looks_the_same_elsewhere() -> None:
    photo = open_image(make_photo(width=640, height=480, format="PNG")).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=16
    )

    stamped = open_image(stamp_qr(png(photo), "image/png", URL))

    assert stamped.format == "PNG"
    where = placement(640, 480, len(modules_of(URL)))
    assert outside(stamped.convert("RGB"), where) == outside(photo.convert("RGB"), where)
    assert_stamp_matches_segno(stamped, URL, exact=True)


# --- JPEG and WebP: lossy, so checked module by module -------------------------------------------
def test_jpeg_stays_a_high_quality_jpeg_with_a_readable_stamp() -> None:
    original_bytes = make_photo(width=1200, height=900)
    original = open_image(original_bytes).convert("RGB")

    stamped = open_image(stamp_qr(original_bytes, "image/jpeg", URL))

    assert stamped.format == "JPEG" and stamped.size == (1200, 900)
    assert_stamp_matches_segno(stamped, URL, exact=False)
    # Away from the stamp the photo is only re-encoded (quality 95): nearly the same.
    where = placement(1200, 900, len(modules_of(URL)))
    region = (0, 0, 1200, where.top - 16)
    before = original.crop(region).tobytes()
    after = stamped.convert("RGB").crop(region).tobytes()
    mean_difference = sum(abs(a - b) for a, b in zip(before, after, strict=True)) / len(before)
    assert mean_difference < 2


def test_webp_stays_webp() -> None:
    photo = make_photo(width=800, height=600, format="WEBP")

    stamped = open_image(stamp_qr(photo, "image/webp", URL))

    assert stamped.format == "WEBP"
    assert_stamp_matches_segno(stamped, URL, exact=False)


def test_exif_is_not_copied_but_its_orientation_is_applied_and_the_colour_profile_kept() -> None:
    image = open_image(make_photo(width=900, height=600)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    exif[0x010F] = "Secret Camera Maker"  # Make
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif, icc_profile=icc, dpi=(300, 300))

    stamped_bytes = stamp_qr(buffer.getvalue(), "image/jpeg", URL)

    stamped = open_image(stamped_bytes)
    assert stamped.size == (600, 900)  # as viewed: portrait
    assert not stamped.getexif()
    assert b"Secret Camera Maker" not in stamped_bytes
    assert stamped.info.get("icc_profile") == icc
    assert tuple(round(v) for v in stamped.info["dpi"]) == (300, 300)
    assert_stamp_matches_segno(stamped, URL, exact=False)


# --- what cannot be stamped ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "mime", "message"),
    [
        (make_photo(), "image/heic", "cannot stamp"),
        (b"not an image at all", "image/jpeg", "cannot be read"),
        (make_photo(width=160, height=120), "image/jpeg", "too small"),
    ],
)
def test_unstampable_images_raise(data: bytes, mime: str, message: str) -> None:
    with pytest.raises(QrStampError, match=message):
        stamp_qr(data, mime, URL)


def test_stamp_if_possible_keeps_an_unstampable_image_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    small = make_photo(width=160, height=120)

    with caplog.at_level(logging.WARNING, logger="jobqueue.qr_stamp"):
        assert stamp_qr_if_possible(small, "image/jpeg", URL) == small

    assert "QR code not stamped" in caplog.text


def test_stamp_if_possible_stamps_when_it_can() -> None:
    photo = make_photo(width=800, height=600, format="PNG")

    stamped = stamp_qr_if_possible(photo, "image/png", URL)

    assert_stamp_matches_segno(open_image(stamped), URL, exact=True)
