"""QR codes of our public addresses (guest result pages), made with segno (pure Python).

One place decides how every QR code of the product is made, so that the code shown on the guest
page and the one stamped onto a photo are the same symbol for the same address:
- a regular QR code (never a Micro QR: phone cameras do not read those), error correction at
  least M (segno raises it when that costs no extra size), byte mode for the URL;
- a quiet zone of 4 modules around it (what the QR standard asks for);
- black modules on white.
"""

from __future__ import annotations

import io

import segno
from PIL import Image

# Kept importable from here while pages move to photobooth.links.
from photobooth.links import guest_result_url as guest_result_url

QUIET_ZONE_MODULES = 4
ERROR_CORRECTION = "m"


def make_qr(data: str) -> segno.QRCode:
    """The QR symbol for a text (an address of ours)."""
    return segno.make(data, error=ERROR_CORRECTION, micro=False)


def qr_modules(data: str) -> list[list[bool]]:
    """The symbol's modules with the quiet zone, row by row: True for a dark module."""
    return [
        [bool(module) for module in row]
        for row in make_qr(data).matrix_iter(scale=1, border=QUIET_ZONE_MODULES)
    ]


def qr_svg(data: str, *, title: str = "") -> bytes:
    """A standalone SVG document of the symbol (white background, quiet zone included).

    It has a viewBox and no fixed size, so CSS decides how large it is shown.
    """
    buffer = io.BytesIO()
    make_qr(data).save(
        buffer,
        kind="svg",
        scale=1,
        border=QUIET_ZONE_MODULES,
        dark="#000",
        light="#fff",
        xmldecl=False,
        omitsize=True,
        title=title or None,
        svgclass="qr",
        lineclass=None,
    )
    return buffer.getvalue()


def qr_image(data: str, *, module_px: int) -> Image.Image:
    """The symbol as a greyscale ("L") Pillow image, `module_px` pixels per module, quiet zone
    included: exactly (modules * module_px) pixels square, with crisp edges (no resampling
    blur)."""
    if module_px < 1:
        raise ValueError("module_px must be at least 1")
    modules = qr_modules(data)
    count = len(modules)
    small = Image.new("L", (count, count), 255)
    small.putdata([0 if dark else 255 for row in modules for dark in row])
    return small.resize((count * module_px, count * module_px), Image.Resampling.NEAREST)
