"""The offline provider: Pillow filters and frame overlays, no key, no network.

It is the default for a fresh install, so the whole flow works without internet access.
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageEnhance, ImageOps

from providers.base import (
    JPEG,
    PNG,
    WEBP,
    InputImage,
    Operation,
    Provider,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingField,
)

LOOKS = ("none", "black_and_white", "sepia", "vintage", "vivid")

QUALITY = SettingField(
    name="jpeg_quality",
    kind="integer",
    label="JPEG quality",
    default=90,
    minimum=50,
    maximum=95,
    help_text="Quality of JPEG results (PNG photos stay PNG).",
)


def _open_photo(image: InputImage) -> Image.Image:
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            # Camera photos are often stored sideways with an orientation tag; apply it so the
            # result is upright once the tag is dropped.
            upright = ImageOps.exif_transpose(opened)
            if upright.mode.startswith("I"):
                # 16/32-bit greyscale: scale to 8 bits first, or convert() clips it to white.
                upright = upright.convert("I").point(lambda value: value / 256)
            return upright.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ProviderError(f"cannot read {image.name}: {error}", code="invalid_image") from error


def apply_look(photo: Image.Image, look: str) -> Image.Image:
    """The photo with a colour look applied."""
    if look == "none":
        return photo
    if look == "black_and_white":
        return ImageOps.autocontrast(ImageOps.grayscale(photo), cutoff=1).convert("RGB")
    if look == "sepia":
        return ImageOps.colorize(ImageOps.grayscale(photo), black="#2b1d0e", white="#f7ead2")
    if look == "vivid":
        return ImageEnhance.Contrast(ImageEnhance.Color(photo).enhance(1.45)).enhance(1.1)
    if look == "vintage":
        toned = ImageOps.colorize(ImageOps.grayscale(photo), black="#3a2a1a", white="#fff2d9")
        faded = Image.blend(photo, toned, 0.6)
        faded = ImageEnhance.Contrast(faded).enhance(0.85)
        return _vignette(faded)
    raise ProviderError(f"unknown look {look!r}", code="invalid_settings")


def _vignette(photo: Image.Image) -> Image.Image:
    # A radial gradient (dark edges) scaled to the photo, multiplied in softly.
    mask = Image.radial_gradient("L").resize(photo.size)
    mask = ImageOps.invert(mask).point(lambda value: 90 + value * 165 // 255)
    return ImageChops.multiply(photo, Image.merge("RGB", (mask, mask, mask)))


def overlay_frame(photo: Image.Image, frame: Image.Image, fit: str) -> Image.Image:
    """The photo with a (transparent) frame or logo template laid over it, fitted to the photo."""
    frame = frame.convert("RGBA")
    if fit == "cover":
        frame = ImageOps.fit(frame, photo.size, method=Image.Resampling.LANCZOS)
    else:
        frame = frame.resize(photo.size, Image.Resampling.LANCZOS)
    composed = photo.convert("RGBA")
    composed.alpha_composite(frame)
    return composed.convert("RGB")


class LocalProvider(Provider):
    """Offline image operations done with Pillow inside the worker."""

    id = "local"
    label = "Local (offline)"
    accepted_mimes = frozenset({JPEG, PNG, WEBP})
    requires_api_key = False
    operations = {
        "photo_look": Operation(
            id="photo_look",
            label="Photo look",
            fields=(
                SettingField(
                    name="look",
                    kind="choice",
                    label="Look",
                    required=True,
                    default="vintage",
                    choices=LOOKS[1:],
                ),
                QUALITY,
            ),
        ),
        "frame_overlay": Operation(
            id="frame_overlay",
            label="Frame or logo overlay",
            fields=(
                SettingField(
                    name="frame_media_id",
                    kind="template",
                    label="Frame template (PNG with transparency)",
                    required=True,
                ),
                SettingField(
                    name="fit",
                    kind="choice",
                    label="Fit",
                    default="stretch",
                    choices=("stretch", "cover"),
                    help_text="stretch: the frame takes the photo's size; cover: keeps its "
                    "proportions and is cropped to the photo.",
                ),
                SettingField(
                    name="look", kind="choice", label="Look", default="none", choices=LOOKS
                ),
                QUALITY,
            ),
        ),
    }

    def run(self, request: ProviderRequest) -> ProviderResult:
        request.ensure_time_left()
        operation = self.operation(request.operation_id)
        settings = operation.clean_settings(request.settings)
        photo = _open_photo(request.photo)
        result = apply_look(photo, settings.get("look", "none"))
        if operation.id == "frame_overlay":
            frame_image = request.templates.get("frame_media_id")
            if frame_image is None:
                raise ProviderError("the slot's frame template is missing", code="invalid_settings")
            try:
                with Image.open(io.BytesIO(frame_image.data)) as frame:
                    result = overlay_frame(result, frame, settings["fit"])
            except (OSError, Image.DecompressionBombError) as error:
                raise ProviderError(f"cannot read the frame template: {error}") from error
        request.ensure_time_left()
        return _encode(result, keep_png=request.photo.mime == PNG, quality=settings["jpeg_quality"])


def _encode(image: Image.Image, *, keep_png: bool, quality: int) -> ProviderResult:
    buffer = io.BytesIO()
    if keep_png:
        image.save(buffer, format="PNG", optimize=False)
        return ProviderResult(data=buffer.getvalue(), mime=PNG)
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=True)
    return ProviderResult(data=buffer.getvalue(), mime=JPEG)
