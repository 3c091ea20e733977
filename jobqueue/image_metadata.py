"""Removing camera metadata (EXIF with GPS, XMP, IPTC, comments) from images we publish.

Results and temporary public copies of guests' photos must not carry where and when a photo was
taken, or the camera's serial number. Stripping is lossless where the format allows it: JPEG
segments, PNG chunks and WebP chunks holding metadata are dropped and every pixel byte is kept.
Only a JPEG whose EXIF orientation rotates it is re-encoded (upright, at high quality), since
dropping that tag alone would turn the picture on its side. Colour profiles are kept; anything
appended after a JPEG's end (embedded previews, or a polyglot's second file) is dropped.
"""

from __future__ import annotations

import io
import struct

from PIL import Image, ImageOps

JPEG, PNG, WEBP = "image/jpeg", "image/png", "image/webp"

# JPEG segments that hold metadata: APP1 (EXIF, XMP), APP13 (IPTC / Photoshop), COM.
_JPEG_DROP = {0xE1, 0xED, 0xFE}
# PNG chunks that hold metadata (critical and colour chunks are kept).
_PNG_DROP = {b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"}
# WebP chunks that hold metadata, and their flags in the VP8X header.
_WEBP_DROP = {b"EXIF": 0x08, b"XMP ": 0x04}


class UnreadableImage(ValueError):
    """The bytes are not the well-formed image their type says."""


def strip_metadata(data: bytes, mime: str) -> bytes:
    """The image without its metadata; other types are returned unchanged."""
    if mime == JPEG:
        if _jpeg_needs_rotation(data):
            return _reencode_upright_jpeg(data)
        return _strip_jpeg(data)
    if mime == PNG:
        return _strip_png(data)
    if mime == WEBP:
        return _strip_webp(data)
    return data


def _jpeg_needs_rotation(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.getexif().get(0x0112, 1) not in (0, 1)
    except (OSError, SyntaxError, ValueError):
        return False


def _reencode_upright_jpeg(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        icc = image.info.get("icc_profile")
        upright = ImageOps.exif_transpose(image)
        buffer = io.BytesIO()
        options = {"quality": 95, "subsampling": 0}
        if icc:
            options["icc_profile"] = icc
        upright.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _strip_jpeg(data: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise UnreadableImage("not a JPEG")
    kept: list[memoryview] = [memoryview(data)[:2]]
    view = memoryview(data)
    dropped = False
    position = 2
    while position < len(data):
        if data[position] != 0xFF:
            raise UnreadableImage("JPEG segment marker expected")
        marker = data[position + 1] if position + 1 < len(data) else -1
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD9, 0xDA) or marker == -1:
            # Start of scan: the compressed data follows, kept byte for byte up to the end of
            # the image; whatever trails it (previews, appended files) is not published.
            if not dropped and data.endswith(b"\xff\xd9"):
                return data  # nothing to remove: no copy, no scan of the compressed data
            end = data.find(b"\xff\xd9", position + 2)
            kept.append(view[position:] if end < 0 else view[position : end + 2])
            return b"".join(kept)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            kept.append(view[position : position + 2])
            position += 2
            continue
        if position + 4 > len(data):
            raise UnreadableImage("JPEG segment cut short")
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise UnreadableImage("JPEG segment length out of range")
        if marker in _JPEG_DROP:
            dropped = True
        else:
            kept.append(view[position:end])
        position = end
    return b"".join(kept)


def _strip_png(data: bytes) -> bytes:
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        raise UnreadableImage("not a PNG")
    out = bytearray(signature)
    position = len(signature)
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise UnreadableImage("PNG chunk cut short")
        if kind not in _PNG_DROP:
            out += data[position:end]
        position = end
        if kind == b"IEND":
            break
    return bytes(out)


def _strip_webp(data: bytes) -> bytes:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise UnreadableImage("not a WebP")
    chunks: list[bytearray] = []
    dropped_flags = 0
    position = 12
    while position + 8 <= len(data):
        kind = data[position : position + 4]
        (size,) = struct.unpack("<I", data[position + 4 : position + 8])
        end = position + 8 + size + (size & 1)  # chunks are padded to even sizes
        if position + 8 + size > len(data):
            raise UnreadableImage("WebP chunk cut short")
        if kind in _WEBP_DROP:
            dropped_flags |= _WEBP_DROP[kind]
        else:
            chunks.append(bytearray(data[position:end]))
        position = end
    for chunk in chunks:
        if chunk[:4] == b"VP8X" and len(chunk) > 8:
            chunk[8] &= ~dropped_flags & 0xFF
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
