"""Deciding an upload's image type from its bytes, never from what the client declares."""

from __future__ import annotations

JPEG, PNG, WEBP, HEIC, HEIF = "image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"

# Bytes needed to recognise every supported signature.
SNIFF_BYTES = 32

_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def sniff_image_mime(head: bytes) -> str | None:
    """The image type the leading bytes announce, or None if they are not a supported image."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return HEIC
        if brand in _HEIF_BRANDS:
            return HEIF
    return None
