"""The offline provider on real images: looks, frames, orientation, formats and its errors."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image, ImageChops, ImageDraw, ImageStat

from providers.base import (
    JPEG,
    PNG,
    WEBP,
    InputImage,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
)
from providers.local import LOOKS, LocalProvider
from tests.support.images import make_frame_png, make_photo, open_image

PHOTO_BACKGROUND = (200, 80, 40)
PHOTO_CENTRE = (250, 230, 30)  # make_photo's yellow ellipse
MAGENTA = (255, 0, 255)
FRAME_SETTINGS = {"frame_media_id": "8d0f3c1e-frame"}


def run(
    operation_id: str,
    settings: Mapping[str, Any],
    photo: bytes,
    *,
    mime: str = JPEG,
    templates: Mapping[str, InputImage] | None = None,
    deadline: datetime | None = None,
) -> ProviderResult:
    request = ProviderRequest(
        operation_id=operation_id,
        settings=settings,
        photo=InputImage(data=photo, mime=mime, name="photo"),
        templates=templates or {},
        deadline=deadline or timezone.now() + timedelta(seconds=48),
    )
    return LocalProvider().run(request)


def frame_template(data: bytes | None = None) -> dict[str, InputImage]:
    return {"frame_media_id": InputImage(data=data or make_frame_png(), mime=PNG, name="frame")}


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    red, green, blue = image.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return red, green, blue


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def band_range(band: Image.Image) -> tuple[int, int]:
    """Darkest and brightest value of a single-band image."""
    histogram = band.histogram()
    used = [value for value, count in enumerate(histogram) if count]
    return used[0], used[-1]


def channel_means(image: Image.Image) -> list[float]:
    return list(ImageStat.Stat(image.convert("RGB")).mean)


def sideways_photo() -> bytes:
    """A 640x480 JPEG stored sideways: orientation 6 says "turn me 90° clockwise to view"."""
    image = Image.new("RGB", (640, 480), (0, 0, 0))
    # A white block in the stored top-left corner ends up top-right once upright.
    ImageDraw.Draw(image).rectangle((0, 0, 159, 119), fill=(255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


# --- photo looks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("look", LOOKS[1:])
def test_each_look_gives_a_jpeg_of_the_same_size_that_differs_from_the_photo(look: str) -> None:
    photo = make_photo()

    result = run("photo_look", {"look": look}, photo)

    assert result.mime == JPEG
    image = open_image(result.data)
    assert image.format == "JPEG"
    assert image.size == (640, 480)
    assert channel_means(image) != pytest.approx(channel_means(open_image(photo)), abs=3)


def test_black_and_white_leaves_no_colour() -> None:
    result = open_image(run("photo_look", {"look": "black_and_white"}, make_photo()).data)

    red, green, blue = result.convert("RGB").split()
    # JPEG rounding may move a channel by a step or two, never more.
    assert band_range(ImageChops.difference(red, green))[1] <= 3
    assert band_range(ImageChops.difference(green, blue))[1] <= 3
    # Still a picture, not a flat grey.
    darkest, brightest = band_range(red)
    assert brightest - darkest > 100


def test_sepia_is_warm() -> None:
    result = open_image(run("photo_look", {"look": "sepia"}, make_photo(color=(40, 90, 200))).data)

    red, green, blue = channel_means(result)
    assert red > green > blue
    assert red - blue > 20


def test_without_a_look_the_photo_look_uses_its_default() -> None:
    photo = make_photo()

    default = run("photo_look", {}, photo)
    vintage = run("photo_look", {"look": "vintage"}, photo)

    assert default.data == vintage.data


def test_jpeg_quality_setting_changes_the_result_file_size() -> None:
    photo = make_photo(width=1200, height=900)

    low = run("photo_look", {"look": "vivid", "jpeg_quality": 50}, photo)
    high = run("photo_look", {"look": "vivid", "jpeg_quality": 95}, photo)

    assert len(low.data) < len(high.data)


def test_png_photo_comes_back_as_png() -> None:
    photo = make_photo(format="PNG")

    result = run("photo_look", {"look": "sepia"}, photo, mime=PNG)

    assert result.mime == PNG
    image = open_image(result.data)
    assert image.format == "PNG" and image.size == (640, 480)


def test_webp_photo_comes_back_as_jpeg() -> None:
    result = run("photo_look", {"look": "vivid"}, make_photo(format="WEBP"), mime=WEBP)

    assert result.mime == JPEG
    assert open_image(result.data).format == "JPEG"


def test_cmyk_jpeg_comes_back_as_an_rgb_jpeg_with_its_colours() -> None:
    import io

    cmyk = Image.new("CMYK", (64, 48), (0, 255, 255, 0))  # pure red in print colours
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)

    result = run("photo_look", {"look": "vivid"}, buffer.getvalue())

    image = open_image(result.data)
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((32, 24))  # type: ignore[misc]
    assert red > 180 and green < 80 and blue < 80  # still red (vivid only boosts it)


def test_16_bit_greyscale_png_keeps_its_tones() -> None:
    grey = Image.new("I;16", (64, 48), 30000)  # 46 % grey
    ImageDraw.Draw(grey).rectangle((0, 0, 31, 47), fill=5000)  # a darker left half
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")

    result = open_image(
        run(
            "frame_overlay",
            FRAME_SETTINGS,
            buffer.getvalue(),
            mime=PNG,
            templates={
                "frame_media_id": InputImage(data=make_frame_png(border=1), mime=PNG, name="frame")
            },
        ).data
    )

    assert close_to(pixel(result, (48, 24)), (117, 117, 117), 3)
    assert close_to(pixel(result, (16, 24)), (19, 19, 19), 3)


def test_sideways_camera_photo_comes_back_upright() -> None:
    result = open_image(run("photo_look", {"look": "black_and_white"}, sideways_photo()).data)

    assert result.size == (480, 640)
    # The marker is now top-right, and the result carries no orientation tag to apply twice.
    assert pixel(result, (470, 10))[0] > 200
    assert pixel(result, (10, 10))[0] < 50
    assert result.getexif().get(0x0112, 1) == 1


# --- frame overlay -------------------------------------------------------------------------------


def test_frame_border_covers_the_photo_and_the_photo_shows_through_the_window() -> None:
    result = run("frame_overlay", FRAME_SETTINGS, make_photo(), templates=frame_template())

    image = open_image(result.data)
    assert result.mime == JPEG and image.size == (640, 480)
    # The 400x300 frame is stretched to the photo: its 20 px border becomes 32 px.
    for corner in ((2, 2), (637, 2), (2, 477), (637, 477), (320, 10), (10, 240)):
        assert close_to(pixel(image, corner), MAGENTA, 40), corner
    assert close_to(pixel(image, (320, 240)), PHOTO_CENTRE, 25)
    assert close_to(pixel(image, (60, 60)), PHOTO_BACKGROUND, 25)


def test_frame_with_cover_fit_keeps_its_proportions() -> None:
    square_frame = make_frame_png(width=400, height=400, border=20)

    stretched = open_image(
        run(
            "frame_overlay", FRAME_SETTINGS, make_photo(), templates=frame_template(square_frame)
        ).data
    )
    covered = open_image(
        run(
            "frame_overlay",
            {**FRAME_SETTINGS, "fit": "cover"},
            make_photo(),
            templates=frame_template(square_frame),
        ).data
    )

    # Covering a 640x480 photo scales the square frame to 640x640 and crops top and bottom off.
    assert close_to(pixel(stretched, (320, 10)), MAGENTA, 40)
    assert close_to(pixel(covered, (320, 10)), PHOTO_BACKGROUND, 25)
    assert close_to(pixel(covered, (10, 240)), MAGENTA, 40)


def test_frame_overlay_applies_the_look_under_the_frame() -> None:
    result = open_image(
        run(
            "frame_overlay",
            {**FRAME_SETTINGS, "look": "black_and_white"},
            make_photo(),
            templates=frame_template(),
        ).data
    )

    assert close_to(pixel(result, (2, 2)), MAGENTA, 40)
    red, green, blue = pixel(result, (320, 240))
    assert abs(red - green) <= 3 and abs(green - blue) <= 3


def test_frame_over_a_png_photo_stays_png() -> None:
    result = run(
        "frame_overlay",
        FRAME_SETTINGS,
        make_photo(format="PNG"),
        mime=PNG,
        templates=frame_template(),
    )

    image = open_image(result.data)
    assert result.mime == PNG and image.format == "PNG"
    assert pixel(image, (2, 2)) == MAGENTA
    assert pixel(image, (320, 240)) == PHOTO_CENTRE


def test_missing_frame_template_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as error:
        run("frame_overlay", FRAME_SETTINGS, make_photo(), templates={})

    assert not isinstance(error.value, ProviderDeadlineExceeded)
    assert "frame" in error.value.message
    assert not error.value.retryable


def test_unreadable_frame_template_is_a_provider_error() -> None:
    broken = frame_template(b"\x89PNG\r\n\x1a\n this is not a frame")

    with pytest.raises(ProviderError) as error:
        run("frame_overlay", FRAME_SETTINGS, make_photo(), templates=broken)

    assert "frame" in error.value.message
    assert not error.value.retryable


# --- deadline and bad input ----------------------------------------------------------------------


def test_no_work_starts_once_the_deadline_has_passed() -> None:
    with pytest.raises(ProviderDeadlineExceeded) as error:
        run(
            "photo_look",
            {"look": "sepia"},
            make_photo(),
            deadline=timezone.now() - timedelta(seconds=1),
        )

    assert error.value.code == "timeout"
    assert not error.value.retryable


@pytest.mark.parametrize(
    "photo",
    [
        pytest.param(b"this is not an image at all", id="text"),
        pytest.param(b"", id="empty"),
        pytest.param(make_photo()[:2000], id="truncated-jpeg"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 600, id="jpeg-header-only"),
    ],
)
def test_corrupt_photo_is_an_invalid_image_error(photo: bytes) -> None:
    with pytest.raises(ProviderError) as error:
        run("photo_look", {"look": "sepia"}, photo)

    assert error.value.code == "invalid_image"
    assert not error.value.retryable
