"""Stamping a small QR code onto a result image, so that guests find their photo online.

The code links to the job's guest result page (photobooth.qr.guest_result_url) and sits in the
bottom-right corner on a white square (the QR quiet zone), a little away from the edges so that
a print's trim does not cut it:
- its side is about 12 % of the image's shorter side, at least 96 px, a whole number of pixels
  per module (sharp edges, nothing resampled);
- an image whose shorter side is under twice that is left as it is (the code would hide the
  photo);
- the format stays: JPEG stays JPEG (quality 95, no chroma subsampling, so the code stays
  crisp), PNG stays PNG (transparency kept), WebP stays WebP. The colour profile and resolution
  (DPI) are kept; EXIF and other metadata are not copied. An EXIF orientation is applied to the
  pixels first, so the photo looks the same without it and the code lands in the corner the
  viewer sees.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from photobooth.qr import qr_image, qr_modules

logger = logging.getLogger(__name__)

SIDE_FRACTION = 0.12  # of the image's shorter side
MIN_SIDE_PX = 96
MARGIN_FRACTION = 0.02  # distance from the right and bottom edges, of the shorter side
MIN_MARGIN_PX = 4
JPEG_QUALITY = 95
WEBP_QUALITY = 95

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
# Modes a greyscale code converts into faithfully (white stays white, black stays black).
DIRECT_MODES = {"1", "L", "LA", "RGB", "RGBA", "CMYK"}


class QrStampError(ValueError):
    """The image cannot carry a QR stamp (type not supported, unreadable, or too small)."""


@dataclass(frozen=True)
class Placement:
    """Where the code goes: its top-left corner, pixels per module and side (quiet zone
    included), in the image as viewed (after its EXIF orientation)."""

    left: int
    top: int
    module_px: int
    side: int


def placement(width: int, height: int, module_count: int) -> Placement:
    """The stamp's position and size for an image of this size and a code of this many modules
    per side (quiet zone included). Raises QrStampError when the image is too small."""
    shorter = min(width, height)
    wanted = max(MIN_SIDE_PX, round(shorter * SIDE_FRACTION))
    module_px = math.ceil(wanted / module_count)
    side = module_px * module_count
    margin = max(MIN_MARGIN_PX, round(shorter * MARGIN_FRACTION))
    if side * 2 > shorter:
        raise QrStampError(f"a {width}x{height} image is too small for a {side} px QR code")
    return Placement(
        left=width - margin - side, top=height - margin - side, module_px=module_px, side=side
    )


def stamp_qr(image_bytes: bytes, mime: str, url: str) -> bytes:
    """The image with a QR code of `url` in its bottom-right corner, in the same format.

    Raises QrStampError for a type other than JPEG/PNG/WebP, bytes Pillow cannot read, or an
    image too small to carry the code.
    """
    image_format = FORMATS.get(mime)
    if image_format is None:
        raise QrStampError(f"cannot stamp a QR code on {mime or 'an unknown type'}")
    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise QrStampError(f"the image cannot be read: {error}") from error
    icc_profile = image.info.get("icc_profile")
    dpi = image.info.get("dpi")
    image = _paintable(image)
    modules = qr_modules(url)
    where = placement(image.width, image.height, len(modules))
    code = qr_image(url, module_px=where.module_px)
    image.paste(code.convert(image.mode), (where.left, where.top))
    image.info = {}  # nothing of the original's metadata travels along by accident
    options: dict[str, Any] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if dpi and image_format in ("JPEG", "PNG"):
        options["dpi"] = dpi
    if image_format == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif image_format == "WEBP":
        options.update(quality=WEBP_QUALITY)
    output = io.BytesIO()
    image.save(output, format=image_format, **options)
    return output.getvalue()


def stamp_qr_if_possible(image_bytes: bytes, mime: str, url: str) -> bytes:
    """stamp_qr, or the image unchanged (with a warning logged) when it cannot carry a code:
    a photo the provider made is never lost because of its stamp."""
    try:
        return stamp_qr(image_bytes, mime, url)
    except QrStampError as error:
        logger.warning("QR code not stamped", extra={"reason": str(error), "mime": mime})
        return image_bytes


def _paintable(image: Image.Image) -> Image.Image:
    """The image in a mode the black-and-white code can be pasted into without changing how
    the rest of the image looks (palette and transparency-key images become RGB(A))."""
    has_transparency = "transparency" in image.info
    if image.mode in DIRECT_MODES and not has_transparency:
        return image
    if image.mode in ("P", "PA", "L", "RGB") or has_transparency:
        return image.convert("RGBA" if has_transparency or image.mode == "PA" else "RGB")
    # 16-bit and other rare modes: 8-bit RGB(A) keeps the picture and takes the code.
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")
