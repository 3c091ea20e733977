"""Real image files for tests, made with Pillow."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def make_photo(
    *,
    width: int = 640,
    height: int = 480,
    format: str = "JPEG",
    color: tuple[int, int, int] = (200, 80, 40),
) -> bytes:
    """A colourful photo-like image with some structure (so filters visibly change it)."""
    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=(30, 140, 220))
    draw.ellipse((width // 3, height // 3, width * 2 // 3, height * 2 // 3), fill=(250, 230, 30))
    buffer = io.BytesIO()
    image.save(buffer, format=format, **({"quality": 92} if format == "JPEG" else {}))
    return buffer.getvalue()


def make_frame_png(*, width: int = 400, height: int = 300, border: int = 20) -> bytes:
    """A transparent PNG with an opaque magenta border: a typical event frame."""
    frame = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(frame)
    draw.rectangle((0, 0, width - 1, height - 1), outline=(255, 0, 255, 255), width=border)
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
